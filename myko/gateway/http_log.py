"""The logger aiohttp reports the gateway's HTTP connections to, without a client's garbage.

aiohttp logs every request its HTTP parser refuses (a bad request line, a byte a
header may not hold, a line over its limit) at ERROR with a traceback. Those are
the client's mistakes, and the client has its 400 already: one sending garbage
must not fill the log with tracebacks. They become one DEBUG line; anything
else aiohttp reports (a handler's unexpected failure) stays as it was.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError


class _RefusedRequests(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.msg, record.args = "refused a malformed HTTP request from %s: %s", (remote, type(exc).__name__)
        record.exc_info, record.exc_text = None, None
        # The logger let it through as an ERROR; as a DEBUG line it passes only if DEBUG is on.
        return http_log.isEnabledFor(logging.DEBUG)


http_log = logging.getLogger("myko.gateway.http")
http_log.addFilter(_RefusedRequests())
