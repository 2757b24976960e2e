"""The IOC backend, in layers that import one way only (checked by import-linter in CI):

- `ioc.core`: what every process shares: settings, the contracts (broker topics, binary
  frames, the JSON between processes), storage (all SQL), the KPI catalogue and areas,
  accounts, the MQTT link. It imports no service.
- the services, each its own process, importing the core and never each other:
  `ingest` and `camera` (top-level packages) and `ioc.serve` (the API with the wall hub).
- `ioc.extras`: the embedded MQTT broker and the demo, installed with the `demo` extra;
  they import only the core and nothing imports them but the command.
- `ioc.cli`: the `ioc` command, which starts any of the above.
"""
