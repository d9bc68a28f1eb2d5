"""OpenTelemetry set-up and JSON log lines for the control plane.

The set-up shared with the gateway lives in the core (``agentfirewall.telemetry``, re-exported
here); the ``logging`` configuration for JSON lines is the control plane's own.

When tracing is on and how spans are sent: see ``agentfirewall.telemetry``.

JSON logs (``--log-format json``): one object per line with ``ts``, ``level``, ``logger``,
``message`` and the ``trace_id`` / ``span_id`` of the span current when it was logged.
"""

from __future__ import annotations

import logging
from typing import Any

from agentfirewall.telemetry import (
    OtelMissingError,
    current_ids,
    json_line,
    otel_problem,
    tracer_provider,
    traces_endpoint,
)

__all__ = [
    "JsonFormatter",
    "OtelMissingError",
    "current_ids",
    "json_line",
    "otel_problem",
    "tracer_provider",
    "traces_endpoint",
    "use_json_logs",
]


class JsonFormatter(logging.Formatter):
    """``logging`` records as :func:`json_line` lines (an exception as its type and text)."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(getattr(record, "fields", None) or {})
        if record.exc_info and record.exc_info[0] is not None:
            fields["exception"] = self.formatException(record.exc_info)
        return json_line(record.levelname.lower(), record.name, record.getMessage(), **fields)


def use_json_logs(level: str = "info") -> dict[str, Any]:
    """A ``logging.config`` dict sending every logger (uvicorn's too) as JSON to stderr."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    loggers = ("uvicorn", "uvicorn.error", "uvicorn.access", "agentfirewall_server")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"json": handler},
        "root": {"handlers": ["json"], "level": level.upper()},
        "loggers": {
            **{
                name: {"handlers": ["json"], "level": level.upper(), "propagate": False}
                for name in loggers
            },
            # their debug lines carry raw headers, an upstream's echo of an injected
            # credential among them: never below WARNING, whatever the server's level
            **{name: {"level": "WARNING"} for name in _RAW_HEADER_LOGGERS},
        },
    }


#: HTTP client libraries whose debug logging writes request and response headers as sent.
_RAW_HEADER_LOGGERS = ("httpx", "httpcore", "hpack", "h2", "urllib3")
