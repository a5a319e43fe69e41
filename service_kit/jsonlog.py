"""One JSON object per log line, for journald and log shippers (issue 19).

``--log-format json`` on a service command, or ``log_format = "json"`` in its config file
(the flag wins; service_kit/cli.py ``log_format``), selects it.  Every line carries ``timestamp``
(RFC 3339, UTC), ``level``, ``logger`` and ``message``; a log call that passes
``extra={"agent_id": ..., "event_id": ..., "reason": ...}`` gets those as fields of their
own, so a query can select one agent's failures without parsing the message text.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

# Fields a log call may add with extra=...; others stay out so a line's shape is stable.
EXTRA_FIELDS = ("agent_id", "event_id", "reason")
LOG_FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON; a traceback goes in ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, tz=timezone.utc)
        line: dict[str, Any] = {
            "timestamp": stamp.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in EXTRA_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                line[field] = value if isinstance(value, (int, float, bool)) else str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        # ensure_ascii keeps the line one physical line whatever an agent id holds.
        return json.dumps(line, ensure_ascii=True)


def configure_logging(log_format: str, text_format: str) -> None:
    """Root logging at INFO, as text with ``text_format`` or as JSON lines."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format: expected one of {LOG_FORMATS}, got {log_format!r}")
    if log_format == "text":
        logging.basicConfig(level=logging.INFO, format=text_format)
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
