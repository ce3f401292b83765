"""A call whose client is gone by the time the method fails (its own deadline passed,
or it cancelled) ends quietly as cancelled: answering it cannot raise grpc's
ExecuteBatchError, which grpc would log as an ERROR with a traceback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any, cast

import grpc
import pytest
from grpc._cython.cygrpc import ExecuteBatchError  # type: ignore[import-not-found]

from myko.errors import DeadlineExceeded, InvalidArgument
from myko.status import streaming, unary


class _Call:
    """Stands in for grpc's servicer context; `gone` makes status writes fail as
    they do on a call the client already left."""

    def __init__(self, *, gone: bool) -> None:
        self.gone = gone
        self.aborted: list[tuple[grpc.StatusCode, str]] = []
        self.written: list[object] = []

    async def abort(self, code: grpc.StatusCode, details: str, trailers: Any = None) -> None:
        if self.gone:
            raise ExecuteBatchError('Failed "execute_batch"')
        self.aborted.append((code, details))
        raise grpc.aio.AbortError()

    async def write(self, item: object) -> None:
        self.written.append(item)

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def code(self) -> grpc.StatusCode | None:
        return self.aborted[-1][0] if self.aborted else None


async def _run(call: Awaitable[object]) -> object:
    return await call


def _context(call: _Call) -> grpc.aio.ServicerContext[Any, Any]:
    return cast("grpc.aio.ServicerContext[Any, Any]", call)


async def _late_stream(request: str, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[str]:
    yield "first"
    raise DeadlineExceeded("not at the fence within 1s")


async def _bad_unary(request: str, context: grpc.aio.ServicerContext[Any, Any]) -> str:
    raise InvalidArgument("name", "no such field")


def test_a_stream_failing_after_its_client_left_ends_as_cancelled() -> None:
    call = _Call(gone=True)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(_run(streaming(_late_stream)("req", _context(call))))
    assert call.written == ["first"]


def test_a_stream_failing_with_its_client_there_gets_the_status() -> None:
    call = _Call(gone=False)
    with pytest.raises(grpc.aio.AbortError):
        asyncio.run(_run(streaming(_late_stream)("req", _context(call))))
    assert [code for code, _ in call.aborted] == [grpc.StatusCode.DEADLINE_EXCEEDED]


def test_a_unary_call_failing_after_its_client_left_ends_as_cancelled() -> None:
    call = _Call(gone=True)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(_run(unary(_bad_unary)("req", _context(call))))


def test_a_unary_call_failing_with_its_client_there_gets_the_status() -> None:
    call = _Call(gone=False)
    with pytest.raises(grpc.aio.AbortError):
        asyncio.run(_run(unary(_bad_unary)("req", _context(call))))
    assert [code for code, _ in call.aborted] == [grpc.StatusCode.INVALID_ARGUMENT]
