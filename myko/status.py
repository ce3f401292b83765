"""Errors to gRPC status codes and back: the one place the mapping lives.

Servers answer a MykoError with `code_of(exc)` (the `unary`/`streaming`
wrappers); clients turn a status back into a MykoError with `error_of`, so a
round trip through a server keeps the class, the message and `retriable`.

Callers never see internal text: an `InternalError`, a bare `MykoError` that
no subclass names, a `ConfigError` and any unexpected exception become
INTERNAL "internal error (ref R)", with the details logged server-side under R
(a `ServerError` relayed from another Myko server keeps that server's
message: it was made safe there). Every stream that ends with an error status,
or for an unexpected reason, leaves one log line naming the method, the
status, the peer and how long it ran.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
from grpc._cython.cygrpc import ExecuteBatchError  # type: ignore[import-not-found]

from myko.errors import (
    ConfigError,
    Conflict,
    DeadlineExceeded,
    InternalError,
    InvalidArgument,
    LimitExceeded,
    MykoError,
    PermissionDenied,
    Rejected,
    ResourceExhausted,
    ServerError,
    Unauthenticated,
    Unavailable,
    UnknownType,
)
from myko.metrics.rpc import MethodMetrics
from myko.v1 import command_pb2

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

# Trailing metadata naming the limit a request exceeded. RESOURCE_EXHAUSTED with it
# means "this request is too big: do not retry it"; without it, a server is
# overloaded and the same request may succeed later.
LIMIT_KEY = "myko-limit"
# gRPC's own message-size refusals (either side): a fixed limit, too.
_GRPC_SIZE_LIMIT = ("Received message larger than max", "Sent message larger than max")


def trailers_of(exc: BaseException) -> tuple[tuple[str, str], ...]:
    return ((LIMIT_KEY, exc.limit),) if isinstance(exc, LimitExceeded) else ()


def exceeded_limit(code: grpc.StatusCode, details: str, trailing_metadata: Any) -> str | None:
    """The limit a failed call exceeded, or None when the status does not say so (overload)."""
    if code != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    for key, value in trailing_metadata or ():
        if key == LIMIT_KEY:
            return value.decode() if isinstance(value, bytes) else str(value)
    if details.startswith(_GRPC_SIZE_LIMIT):
        return "grpc max message length"
    return None


# The caller's mistake (or a limit it hit): logged at INFO, not as our fault.
CLIENT_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)

# grpc-message travels in an HTTP/2 trailer; every message we build is far
# shorter, this only guards against a future one that echoes too much.
MAX_DETAILS_CHARS = 1024


def code_of(exc: MykoError) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        if cls in CODES:
            return CODES[cls]
    return grpc.StatusCode.INTERNAL


def status_of(exc: BaseException, where: str) -> tuple[grpc.StatusCode, str]:
    """The status and message a caller gets for `exc`; internal details are logged, not sent."""
    if isinstance(exc, MykoError):
        code = code_of(exc)
        if code is not grpc.StatusCode.INTERNAL or isinstance(exc, ServerError):
            return code, exc.message[:MAX_DETAILS_CHARS]
    internal = InternalError()
    log.error("unexpected error in %s (ref %s)", where, internal.ref, exc_info=exc)
    return grpc.StatusCode.INTERNAL, internal.message


def error_of(code: grpc.StatusCode, details: str, trailing_metadata: Any = ()) -> MykoError:
    """The MykoError a client raises for a non-OK status (INTERNAL and the rest: ServerError);
    RESOURCE_EXHAUSTED naming a limit is LimitExceeded (not retriable)."""
    limit = exceeded_limit(code, details, trailing_metadata)
    if limit is not None:
        return LimitExceeded(limit, details or code.name)
    make = _ERRORS.get(code)
    if make is None:
        return ServerError(details or code.name)
    return make(details or code.name)


def error_from_rpc(exc: grpc.aio.AioRpcError) -> MykoError:
    """`error_of` for a failed call, as grpc.aio raises it."""
    return error_of(exc.code(), exc.details() or "", exc.trailing_metadata())


# A status code as a number (CommandError.code) -> the code.
_CODE_NUMBERS = {code.value[0]: code for code in grpc.StatusCode}


def command_error(exc: BaseException, where: str) -> command_pb2.CommandError:
    """The status Execute would have failed with, as one item of an ExecuteBatch answer."""
    code, details = status_of(exc, where)
    return command_pb2.CommandError(
        code=code.value[0], message=details, limit=exc.limit if isinstance(exc, LimitExceeded) else ""
    )


def error_from_command_error(error: command_pb2.CommandError) -> MykoError:
    """`error_of` for one item of an ExecuteBatch answer: what a failed Execute would raise."""
    code = _CODE_NUMBERS.get(error.code, grpc.StatusCode.UNKNOWN)
    return error_of(code, error.message, ((LIMIT_KEY, error.limit),) if error.limit else ())


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


def _peer(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    try:
        return str(context.peer())
    except Exception:  # the call may be gone already
        return "?"


def unary(
    fn: Callable[[Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]],
    *,
    check: Check = _no_check,
    name: str | None = None,
    metrics: MethodMetrics | None = None,
) -> Callable[[Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]]:
    """Wrap a unary method: MykoError -> its status; anything else -> INTERNAL.
    `check(request)` runs first, under the same mapping. `metrics` counts each
    call by its status and times it."""
    where = name or fn.__qualname__

    @functools.wraps(fn)
    async def wrapper(request: Req, context: grpc.aio.ServicerContext[Any, Any]) -> Resp:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            check(request)
            return await fn(request, context)
        except grpc.aio.AbortError:
            code = _aborted_code(context)
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:
            code, details = status_of(exc, where)
            await _abort(context, code, details, exc)
        finally:
            if metrics is not None:
                metrics.unary_done(code, time.perf_counter() - started)
        raise AssertionError("unreachable")  # context.abort raises

    return wrapper


def streaming(
    fn: Callable[[Req, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Resp]],
    *,
    check: Check = _no_check,
    name: str | None = None,
    metrics: MethodMetrics | None = None,
) -> Callable[[Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[None]]:
    """Wrap a server-streaming method the same way, and log how an abnormal end happened.
    `metrics` counts open streams, messages sent, and each stream's status when it ends.

    The wrapper writes each message itself (grpc's reader/writer form) rather than
    handing grpc a generator: a client that goes away between two messages makes the
    next write fail, and grpc logs a failed write of a generator's item as an ERROR
    with a traceback when it has not yet seen the cancellation. Here it is what it
    is, the stream's normal end."""
    where = name or fn.__qualname__

    @functools.wraps(fn)
    async def wrapper(request: Req, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        started = time.monotonic()
        sent = 0
        code = grpc.StatusCode.OK
        if metrics is not None:
            metrics.streams.inc()
        stream: AsyncIterator[Resp] | None = None
        try:
            check(request)
            stream = fn(request, context)
            async for item in stream:
                try:
                    await context.write(item)
                except ExecuteBatchError as exc:
                    # The call is gone (the client cancelled or disconnected).
                    raise asyncio.CancelledError from exc
                sent += 1
                if metrics is not None:
                    metrics.sent.inc()
        except grpc.aio.AbortError:
            code = _aborted_code(context)
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            # The client went away (or the server is stopping): a stream's normal end.
            log.debug(
                "stream %s from %s cancelled after %.1fs, %d messages",
                where,
                _peer(context),
                time.monotonic() - started,
                sent,
            )
            raise
        except Exception as exc:
            code, details = status_of(exc, where)
            level = logging.INFO if code in CLIENT_CODES else logging.WARNING
            log.log(
                level,
                "stream %s from %s ended %s after %.1fs, %d messages: %s",
                where,
                _peer(context),
                code.name,
                time.monotonic() - started,
                sent,
                details,
            )
            await _abort(context, code, details, exc)
        finally:
            # A stream left at a yield (its write failed) releases its subscriptions now.
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()
            if metrics is not None:
                metrics.streams.dec()
                metrics.handled(code)

    return wrapper


async def _abort(
    context: grpc.aio.ServicerContext[Any, Any],
    code: grpc.StatusCode,
    details: str,
    exc: BaseException,
) -> NoReturn:
    """Answer the call with `code`; a call that is already gone (the client's own
    deadline passed or it cancelled while we failed) ends as cancelled, quietly:
    grpc would otherwise log the failed status write as an ERROR with a traceback."""
    try:
        await context.abort(code, details, trailers_of(exc))
    except ExecuteBatchError as gone:
        raise asyncio.CancelledError from gone
    raise AssertionError("unreachable")  # context.abort raises


def _aborted_code(context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode:
    """The code a method aborted with by itself (context.abort), for the metrics."""
    try:
        code = context.code()
    except Exception:  # the call may be gone already
        return grpc.StatusCode.UNKNOWN
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
