"""Errors to gRPC status codes: the one place the mapping lives."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from myko.errors import (
    ConfigError,
    Conflict,
    DeadlineExceeded,
    InvalidArgument,
    MykoError,
    Rejected,
    Unavailable,
    UnknownType,
)

log = logging.getLogger(__name__)

CODES: dict[type[MykoError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    UnknownType: grpc.StatusCode.UNIMPLEMENTED,
    Rejected: grpc.StatusCode.FAILED_PRECONDITION,
    Conflict: grpc.StatusCode.ABORTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    ConfigError: grpc.StatusCode.INTERNAL,
}


def code_of(exc: MykoError) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        if cls in CODES:
            return CODES[cls]
    return grpc.StatusCode.INTERNAL


Req = TypeVar("Req")
Resp = TypeVar("Resp")


Check = Callable[[Any], None]


def _no_check(request: Any) -> None:
    pass


def unary(
    fn: Callable[[Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]],
    *,
    check: Check = _no_check,
) -> Callable[[Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]]:
    """Wrap a unary method: MykoError -> its status; anything else -> INTERNAL.
    `check(request)` runs first, under the same mapping."""

    @functools.wraps(fn)
    async def wrapper(request: Req, context: grpc.aio.ServicerContext[Any, Any]) -> Resp:
        try:
            check(request)
            return await fn(request, context)
        except MykoError as exc:
            await context.abort(code_of(exc), exc.message)
        except grpc.aio.AbortError:
            raise
        except Exception:
            log.exception("unexpected error in %s", fn.__qualname__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        raise AssertionError("unreachable")  # context.abort raises

    return wrapper


def streaming(
    fn: Callable[[Req, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Resp]],
    *,
    check: Check = _no_check,
) -> Callable[[Req, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Resp]]:
    """Wrap a server-streaming method the same way."""

    @functools.wraps(fn)
    async def wrapper(request: Req, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Resp]:
        try:
            check(request)
            async for item in fn(request, context):
                yield item
        except MykoError as exc:
            await context.abort(code_of(exc), exc.message)
        except grpc.aio.AbortError:
            raise
        except Exception:
            log.exception("unexpected error in %s", fn.__qualname__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")

    return wrapper
