"""A server span around every unary gRPC call, child of the caller's `traceparent`.

An interceptor rather than a part of rpc.py's method builders: it sees every
method of the server (ours and any a service adds) and stays out of the
wrappers that map errors and check callers. Server-streaming calls (Watch,
Subscribe) get none: a stream lives as long as its subscriber, so its span
would say nothing about any one change; the changes' emissions are spanned
instead (tracing.py).

Under an unsampled caller (a `traceparent` with the sampled flag off) and a
parent-based sampler, no span is made at all (`Tracing.skips`): it could only
be dropped. The caller's context is made current instead, so what the call
propagates (Kafka headers, onward calls) names the same unsampled trace. Each
method's wrapper is built once, not per call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind, Status, StatusCode

from myko.tracing import Tracing

# Probes and tooling, not requests.
_UNTRACED = ("/grpc.health.v1.Health/", "/grpc.reflection.")
# Wrappers kept per method; a server has a few dozen methods, this only bounds a
# generic handler that would answer any name.
_MAX_WRAPPED = 1024

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler[Any, Any] | None"]]


class ServerSpans(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(self, tracing: Tracing) -> None:
        self._tracing = tracing
        # method -> (the handler wrapped, its wrapper): handlers are looked up per call,
        # the same object each time for a registered method.
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(  # type: ignore[override]
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None or details.method.startswith(_UNTRACED):
            return handler
        known = self._wrapped.get(details.method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = self._wrap(details.method, handler)
        if len(self._wrapped) < _MAX_WRAPPED:
            self._wrapped[details.method] = (handler, wrapped)
        return wrapped

    def _wrap(self, method_path: str, handler: Handler) -> Handler:
        inner: Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]] = handler.unary_unary  # type: ignore[assignment]
        name = method_path.lstrip("/")
        service, _, method = name.rpartition("/")
        tracing = self._tracing
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}

        async def traced(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            parent = tracing.context_from_metadata(context.invocation_metadata())
            if tracing.skips(parent):
                token = otel_context.attach(parent)
                try:
                    return await inner(request, context)
                finally:
                    otel_context.detach(token)
            with tracing.tracer.start_as_current_span(
                name,
                context=parent,
                kind=SpanKind.SERVER,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                try:
                    reply = await inner(request, context)
                except asyncio.CancelledError:
                    span.set_attribute("rpc.grpc.status_code", grpc.StatusCode.CANCELLED.value[0])
                    span.set_status(Status(StatusCode.ERROR, "CANCELLED: the caller went away"))
                    raise
                except BaseException:
                    # status.py's wrappers answer errors with context.abort: the code is set.
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    if isinstance(code, int):
                        code = next(
                            (c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN
                        )
                    span.set_attribute("rpc.grpc.status_code", code.value[0])
                    span.set_status(Status(StatusCode.ERROR, f"{code.name}: {context.details() or ''}"))
                    raise
                span.set_attribute("rpc.grpc.status_code", 0)
                return reply

        return grpc.unary_unary_rpc_method_handler(
            traced,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
