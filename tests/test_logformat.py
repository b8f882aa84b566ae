"""Log lines as JSON: one object per line, with the traceback when there is one."""

from __future__ import annotations

import json
import logging

from objstore.logformat import JsonFormatter, formatter


def record(message: str, *args: object, exc_info: object = None) -> logging.LogRecord:
    made = logging.LogRecord("objstore.cache", logging.ERROR, __file__, 1, message, args, None)
    made.created = 1764532800.25  # 2025-11-30T20:00:00.250Z
    if exc_info is not None:
        made.exc_info = exc_info  # type: ignore[assignment]
    return made


def test_json_line_has_time_level_logger_and_message() -> None:
    """A record is one JSON object: UTC time to the millisecond, level, logger, message."""
    line = JsonFormatter().format(record("could not save key %s", '"k"'))
    assert json.loads(line) == {
        "time": "2025-11-30T20:00:00.250Z",
        "level": "ERROR",
        "logger": "objstore.cache",
        "message": 'could not save key "k"',
    }


def test_json_line_carries_the_traceback_on_one_line() -> None:
    """A record with an exception adds its traceback; the line stays one line."""
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        line = JsonFormatter().format(record("failed", exc_info=sys.exc_info()))
    assert "\n" not in line
    exception = json.loads(line)["exception"]
    assert exception.startswith("Traceback (most recent call last):\n")
    assert exception.endswith("ValueError: boom")


def test_json_line_is_ascii_for_a_lone_surrogate() -> None:
    """A message quoting a lone surrogate gives an ASCII line that still parses."""
    line = JsonFormatter().format(record("key %s", "\udcff"))
    assert line.isascii()
    assert json.loads(line)["message"] == "key \udcff"


def test_text_is_the_default_format() -> None:
    """The text format: time, level, logger and message on one line."""
    text = formatter("text").format(record("stopped"))
    assert text.endswith(" ERROR objstore.cache: stopped")
