#!/usr/bin/env python3
"""aiortc as a peer of bench/video.py: RTSP in, WebRTC out, the H.264 relayed without decoding.

Run by the interpreter of a venv of its own (`--aiortc-python` of bench/video.py), never the
project's: aiortc pins its own PyAV. It imports nothing from this repository.

For each `NAME=RTSP_URL`, one aiortc MediaPlayer(url, decode=False) (the demuxer's H.264
packets, re-packetized as RTP by aiortc's H264 `pack`, never decoded nor encoded) opened on the
first page that asks for NAME, then shared through a MediaRelay by every later page (as one
gateway serves many viewers). A tiny HTTP endpoint takes the page's offer and returns aiortc's
answer (aiortc gathers its candidates before answering: no trickle):

    POST /offer  {"sdp": ..., "type": "offer", "id": NAME}  ->  {"sdp": ..., "type": "answer"}

The body is sent as text/plain, so the page on another local port needs no CORS preflight.
Prints one line, {"port": N}, on stdout once it listens; runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import json
import signal
import sys
import threading
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer, MediaRelay


class Gateway:
    """The players (one per RTSP source, opened once) and the peer connections to the pages."""

    def __init__(self, loop: asyncio.AbstractEventLoop, urls: dict[str, str]) -> None:
        self.loop = loop
        self.urls = urls
        self.players: dict[str, MediaPlayer] = {}
        self.relay = MediaRelay()
        self.pcs: set[RTCPeerConnection] = set()

    async def player(self, name: str) -> MediaPlayer:
        if name not in self.players:
            # av.open blocks on the RTSP handshake: off the event loop. TCP as ffmpeg's HLS peer.
            self.players[name] = await self.loop.run_in_executor(None, lambda: MediaPlayer(
                self.urls[name], decode=False, options={"rtsp_transport": "tcp"}))
            if self.players[name].video is None:
                raise ValueError(f"{name}: no H.264 or VP8 video stream to relay without decoding")
        return self.players[name]

    async def answer(self, offer: dict[str, Any]) -> dict[str, str]:
        player = await self.player(str(offer["id"]))
        pc = RTCPeerConnection()
        self.pcs.add(pc)
        proxy = self.relay.subscribe(player.video)

        @pc.on("connectionstatechange")
        async def _closed() -> None:
            # the page hung up (DTLS close) or went away: stop sending to it now, and drop its
            # proxy from the relay, else its queue grows and the loop keeps encrypting for it
            if pc.connectionState in ("failed", "closed"):
                proxy.stop()
                await pc.close()
                self.pcs.discard(pc)

        sender = pc.addTrack(proxy)
        # packets, not frames: the negotiated codec must be the stream's own (H.264); the
        # preferences count only when set before the offer is taken (aiortc picks the codecs then)
        h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
        next(t for t in pc.getTransceivers() if t.sender == sender).setCodecPreferences(h264)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type=offer["type"]))
        await pc.setLocalDescription(await pc.createAnswer())
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}

    async def close(self) -> None:
        await asyncio.gather(*(pc.close() for pc in self.pcs), return_exceptions=True)
        for player in self.players.values():
            if player.video is not None:
                player.video.stop()  # ends its demuxing thread before the event loop closes


def handler(gateway: Gateway) -> type[http.server.BaseHTTPRequestHandler]:
    class Offer(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            try:
                offer = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                body, code = json.dumps(asyncio.run_coroutine_threadsafe(
                    gateway.answer(offer), gateway.loop).result(timeout=30)).encode(), 200
            except Exception as e:  # noqa: BLE001 - the page shows why
                body, code = json.dumps({"error": f"{type(e).__name__}: {e}"}).encode(), 500
                print(f"peer_aiortc: offer failed: {e!r}", file=sys.stderr, flush=True)
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Offer


async def serve(urls: dict[str, str], port: int) -> None:
    loop = asyncio.get_running_loop()
    gateway = Gateway(loop, urls)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler(gateway))
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    print(json.dumps({"port": httpd.server_address[1]}), flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    httpd.shutdown()
    await gateway.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", nargs="+", help="NAME=RTSP_URL")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    urls = dict(s.split("=", 1) for s in args.source)
    asyncio.run(serve(urls, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
