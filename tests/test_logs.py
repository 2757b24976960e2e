"""What agencies send reaches the logs: it must not forge lines or drive a terminal."""

from __future__ import annotations

import logging

import orjson

from ioc.core.logs import JsonFormatter, TextFormatter

HOSTILE = "hs-1\nWARNING ioc.ingest: forged line\r\x1b[31mred\x07"


def _record(exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            import sys
            info = sys.exc_info()
    r = logging.LogRecord("ioc.ingest", logging.INFO, __file__, 1, "rejected %s", (HOSTILE,), info)
    r.msg_id = HOSTILE
    return r


def test_text_log_escapes_control_characters_in_message_and_fields() -> None:
    line = TextFormatter("%(levelname)s %(name)s: %(message)s").format(_record())
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\x07" not in line
    assert "hs-1\\nWARNING ioc.ingest: forged line\\r\\x1b[31mred\\x07" in line
    assert line.count("msg_id=") == 1


def test_text_log_keeps_a_traceback_readable() -> None:
    text = TextFormatter("%(levelname)s %(name)s: %(message)s").format(_record(exc=True))
    head, _, trace = text.partition("\n")
    assert "\\n" in head and trace.startswith("Traceback (most recent call last):") and "ValueError: boom" in trace


def test_json_log_is_one_line_with_the_value_kept() -> None:
    line = JsonFormatter().format(_record())
    assert "\n" not in line
    assert orjson.loads(line)["msg_id"] == HOSTILE  # stored verbatim, shown escaped
