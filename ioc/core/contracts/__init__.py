"""Every contract between processes, defined once, each with its encoder and decoder side by side.

- `topics`: every broker topic and filter, as builders and parsers.
- `framing`: the layout the binary frames share (magic, header length, JSON header, body).
- `tile_frame`: the camera service's binary picture (MQTT payload), `IOCT`.
- `video_frame`: a camera's H.264 access units (`IOCV`), camera service -> hubs -> pages.
- `wall_frames`: what the hub writes to a websocket (binary `IOCW` pictures, JSON messages);
  the pages' side of it is `dashboards/PROTOCOL.md`.
- `camera`: a camera's status and events as the camera service publishes them, and the
  operator's commands to it.
- `kpi`: a reading's live value (ingest -> hubs) and the acknowledgement agencies read.
- `wall`: the wall's shared state, alerts and HD demand between API nodes and cameras.

Producers and consumers import these; `tests/test_contracts.py` fails if a topic literal
appears anywhere else.
"""
