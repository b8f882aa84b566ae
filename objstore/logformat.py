"""The formats of log lines: text for people, one JSON object per line for log collectors.

Owns how a :class:`logging.LogRecord` becomes a line. Both formats carry the
same content: the time, the level, the logger's name, the message, and the
traceback when there is one. Knows nothing of the server; :mod:`objstore.cli`
picks the format (``--log-format``).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Final

__all__ = ["LOG_FORMATS", "JsonFormatter", "formatter"]

#: The choices of ``--log-format``.
LOG_FORMATS: Final = ("text", "json")

_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601, UTC, milliseconds), ``level``,
    ``logger``, ``message``, and ``exception`` (the traceback) when there is one.

    Newlines inside a message or traceback are escaped by JSON, so a line is
    always one whole record.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # ASCII escapes: a line is valid UTF-8 even when a message quotes a lone surrogate.
        return json.dumps(entry)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of *log_format*, one of :data:`LOG_FORMATS`."""
    if log_format == "json":
        return JsonFormatter()
    return logging.Formatter(_TEXT)
