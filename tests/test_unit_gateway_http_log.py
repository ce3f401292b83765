"""The gateway's HTTP log: a request aiohttp's parser refuses is one DEBUG line, not an ERROR traceback."""

from __future__ import annotations

import logging
import sys

import pytest
from aiohttp.http_exceptions import InvalidURLError

from myko.gateway.http_log import http_log


def _logged(exc: BaseException, caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    caplog.clear()
    with caplog.at_level(level, logger=http_log.name):
        try:
            raise exc
        except BaseException:
            http_log.exception("Error handling request from %s", "203.0.113.9")
    assert sys.exc_info()[0] is None
    return [r for r in caplog.records if r.name == http_log.name]


def test_a_malformed_request_is_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    garbage = InvalidURLError("GET /\\xff HTTP/1.1" + "a" * 5000)
    assert _logged(garbage, caplog, logging.WARNING) == []
    (line,) = _logged(garbage, caplog, logging.DEBUG)
    assert line.levelno == logging.DEBUG and line.exc_info is None
    assert line.getMessage() == "refused a malformed HTTP request from 203.0.113.9: InvalidURLError"


def test_a_handler_failure_stays_an_error_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    (line,) = _logged(RuntimeError("bug"), caplog, logging.WARNING)
    assert line.levelno == logging.ERROR and line.exc_info is not None
