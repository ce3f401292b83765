"""Log lines: text for people or JSON for a collector, each with service, tx and trace id.

`configure_logging` is the only logging setup; every entry point calls it
once with its settings (MYKO_LOG_FORMAT, MYKO_LOG_LEVEL or
MYKO_<SERVICE>_LOG_LEVEL). A line carries:

- the service (fixed per process);
- the tx, inside `tx_context(tx)` (command handling, a saga's event);
- the trace and span id of the current OpenTelemetry span, when one is
  current (a request, a saga event, an emission);
- named fields a call site adds with `extra=fields(...)` (JSON only: the text
  line already says the same in words).

    {"ts": "2026-11-29T21:04:05.123Z", "level": "INFO", "service": "command_svc",
     "logger": "myko.command_service", "message": "command targets.v1.SetTarget failed: ...",
     "tx": "5f0c...", "trace_id": "4bf9...", "span_id": "00f0...", "code": "INVALID_ARGUMENT"}
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace

# The tx being handled by this task (a ContextVar: per task, never shared).
_TX: ContextVar[str | None] = ContextVar("myko_log_tx", default=None)
_FIELDS = "myko_fields"
# Keys a line always has; a call site's fields never replace them.
_BASE_KEYS = frozenset({"ts", "level", "service", "logger", "message", "tx", "trace_id", "span_id"})
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def tx_context(tx: str) -> Iterator[None]:
    """Log lines written in the block (by this task and what it awaits) name `tx`."""
    token = _TX.set(tx)
    try:
        yield
    finally:
        _TX.reset(token)


def current_tx() -> str | None:
    return _TX.get()


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` for a log call: named fields of its JSON line."""
    return {_FIELDS: values}


class _LineContext(logging.Filter):
    """Stamps each record with the service, the tx and the current span's ids."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self._service
        record.tx = _TX.get()
        sc = trace.get_current_span().get_span_context()
        if sc.is_valid:
            record.trace_id = trace.format_trace_id(sc.trace_id)
            record.span_id = trace.format_span_id(sc.span_id)
        else:
            record.trace_id = record.span_id = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out: dict[str, Any] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": getattr(record, "service", None),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("tx", "trace_id", "span_id"):
            value = getattr(record, key, None)
            if value:
                out[key] = value
        for key, value in getattr(record, _FIELDS, {}).items():
            if key not in _BASE_KEYS:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The classic line, then `[tx=... trace=...]` when it has them."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tags = [
            f"{label}={value}"
            for label, value in (
                ("tx", getattr(record, "tx", None)),
                ("trace", getattr(record, "trace_id", None)),
            )
            if value
        ]
        if not tags:
            return line
        head, sep, tail = line.partition("\n")  # keep a traceback below the tagged line
        return f"{head} [{' '.join(tags)}]{sep}{tail}"


# grpc's aio server logs this, with a traceback, when it cannot write the answer
# of a call whose client already left (its deadline passed, or it cancelled,
# between the method's return and the write): nothing failed on our side.
_CLIENT_GONE = "ExecuteBatchError raised in core by servicer method"


class _ClientGone(logging.Filter):
    """Turns grpc's report of an answer to a departed client into one DEBUG line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str) or not record.msg.startswith(_CLIENT_GONE):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.msg = f"{record.getMessage()}: the client left before its answer was written"
        record.args, record.exc_info, record.exc_text = None, None, None
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def configure_logging(*, service: str, level: str, fmt: str = "text") -> None:
    """Send every log line of this process to stderr in `fmt` ("text" or "json")."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_LineContext(service))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # aiokafka's INFO lines are about its own connections: noise at our INFO.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    grpc_core = logging.getLogger("grpc._cython.cygrpc")
    if not any(isinstance(f, _ClientGone) for f in grpc_core.filters):
        grpc_core.addFilter(_ClientGone())
