"""Structured logging: one JSON object per line on stdout, in Cloud Logging's format, carrying
the request's trace (from Cloud Run's `traceparent` or `X-Cloud-Trace-Context` header) so a
request's log lines group under its trace in Cloud Logging."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Mapping

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})-[0-9a-f]{2}$")
_CLOUD_TRACE = re.compile(r"^(?P<trace>[0-9a-fA-F]{32})(?:/(?P<span>\d+))?")
_trace: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar("trace", default=None)


def trace_fields(traceparent: str | None, cloud_trace: str | None, project: str) -> dict[str, str]:
    """Cloud Logging's trace fields from a request's `traceparent` and `X-Cloud-Trace-Context`
    headers (empty when it carries no trace)."""
    match = _TRACEPARENT.match(traceparent or "") or _CLOUD_TRACE.match(cloud_trace or "")
    if not match:
        return {}
    fields = {"logging.googleapis.com/trace": f"projects/{project}/traces/{match.group('trace').lower()}"}
    if match.group("span"):
        fields["logging.googleapis.com/spanId"] = match.group("span")
    return fields


def set_trace(fields: Mapping[str, str]) -> contextvars.Token:
    """Attach trace fields to every log line of this request (reset with the returned token)."""
    return _trace.set(fields)


def reset_trace(token: contextvars.Token) -> None:  # the request is over
    _trace.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
        }
        entry |= _trace.get() or {}
        entry |= {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO") -> None:
    """Install the JSON handler on the root logger once (repeated calls only set the level)."""
    root = logging.getLogger()
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        root.handlers = [handler]
    root.setLevel(level.upper())
