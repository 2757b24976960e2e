"""Structured logging: one JSON object per line, carrying which agency, camera or client.

Callers pass context through `extra=`, e.g. `log.warning("rejected", extra={"agency": a})`;
every non-standard attribute of the record lands in the JSON object.
"""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

import orjson

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
#: the address of the client whose request is being served (set by the API for each request):
#: every line logged while serving it says where it came from, the audit lines included
REQUEST_CLIENT: ContextVar[str | None] = ContextVar("request_client", default=None)


def _name(record: logging.LogRecord) -> str:
    # uvicorn files its own start-up and shutdown lines under "uvicorn.error" whatever their level
    return "uvicorn" if record.name == "uvicorn.error" and record.levelno < logging.ERROR else record.name


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    out = {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}
    client = REQUEST_CLIENT.get()
    if client is not None:
        out.setdefault("client", client)
    return out


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": _name(record),
            "msg": record.getMessage(),
        }
        out.update(_extras(record))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def _printable(text: str) -> str:
    """Control characters escaped: what agencies send (a msg_id, a KPI id, a topic) reaches the
    text log, where a newline would forge a log line and an escape sequence drive a terminal.
    (The JSON format escapes them by itself.) A traceback keeps its lines."""
    head, sep, trace = text.partition("\nTraceback (most recent call last):")
    return head.translate(_CONTROL) + (sep + trace if sep else "")


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        record.name = _name(record)
        base = _printable(super().format(record))
        extras = " ".join(f"{k}={_printable(str(v))}" for k, v in _extras(record).items())
        return f"{base} {extras}" if extras else base


def setup_logging(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("uvicorn.access").setLevel("WARNING")
