"""Errors to gRPC status codes and back: the one place the mapping lives.

Servers answer a MykoError with `code_of(exc)` (the `unary`/`streaming`
wrappers); clients turn a status back into a MykoError with `error_of`, so a
round trip through a server keeps the class, the message and `retriable`.
"""

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
    PermissionDenied,
    Rejected,
    ResourceExhausted,
    ServerError,
    Unauthenticated,
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
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ServerError: grpc.StatusCode.INTERNAL,
    ConfigError: grpc.StatusCode.INTERNAL,
}

# A status a server answered with -> the error a client raises. Codes Myko's
# servers never send map to their nearest meaning.
_ERRORS: dict[grpc.StatusCode, Callable[[str], MykoError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: lambda m: InvalidArgument(*_field_and_message(m)),
    grpc.StatusCode.OUT_OF_RANGE: lambda m: InvalidArgument(*_field_and_message(m)),
    grpc.StatusCode.UNIMPLEMENTED: lambda m: UnknownType("", "", message=m),
    grpc.StatusCode.NOT_FOUND: lambda m: UnknownType("", "", message=m),
    grpc.StatusCode.FAILED_PRECONDITION: Rejected,
    grpc.StatusCode.ALREADY_EXISTS: Rejected,
    grpc.StatusCode.ABORTED: Conflict,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    # The server (or a proxy on the way) gave the call up, e.g. while shutting down.
    grpc.StatusCode.CANCELLED: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
}


def code_of(exc: MykoError) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        if cls in CODES:
            return CODES[cls]
    return grpc.StatusCode.INTERNAL


def error_of(code: grpc.StatusCode, details: str) -> MykoError:
    """The MykoError a client raises for a non-OK status (INTERNAL and the rest: ServerError)."""
    make = _ERRORS.get(code)
    if make is None:
        return ServerError(details or code.name)
    return make(details or code.name)


def error_from_rpc(exc: grpc.aio.AioRpcError) -> MykoError:
    """`error_of` for a failed call, as grpc.aio raises it."""
    return error_of(exc.code(), exc.details() or "")


def _field_and_message(details: str) -> tuple[str, str]:
    # InvalidArgument's message is "<field>: <message>"; a field path has no blanks.
    field, sep, rest = details.partition(": ")
    if sep and field and not any(c.isspace() for c in field):
        return field, rest
    return "", details


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
