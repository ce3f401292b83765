"""The server span interceptor over a real in-process grpc.aio server (no Kafka).

What a caller's `traceparent` leads to: a SERVER span that is its child when it
was sampled, no span at all when it was not (under the parent-based default),
and in both cases the caller's trace current inside the handler, so what the
call passes on names the same trace.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from myko.server_spans import ServerSpans
from myko.settings import TracingSettings
from myko.trace_export import build_tracing
from myko.tracing import TRACEPARENT, Tracing

_SERVICE = "test.Spans"
_TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
_PARENT_SPAN_ID = 0x00F067AA0BA902B7


def _traceparent(sampled: bool) -> str:
    return f"00-{_TRACE_ID:032x}-{_PARENT_SPAN_ID:016x}-{'01' if sampled else '00'}"


class _Server:
    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing
        self.seen: list[dict[str, str]] = []  # what each call would propagate from inside

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        async def echo(request: bytes, _context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            self.seen.append(self.tracing.carrier())
            return request

        async def fail(_request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no")
            raise AssertionError("unreachable")

        return grpc.method_handlers_generic_handler(
            _SERVICE,
            {
                "Echo": grpc.unary_unary_rpc_method_handler(echo),
                "Fail": grpc.unary_unary_rpc_method_handler(fail),
            },
        )


@pytest.fixture
async def served() -> AsyncIterator[tuple[_Server, InMemorySpanExporter, grpc.aio.Channel]]:
    exporter = InMemorySpanExporter()
    # The default sampler (parent-based ratio) at ratio 1: a call without a parent is kept.
    settings = TracingSettings.from_env(
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.0"}
    )
    tracing = build_tracing(settings, service="t", processors=[SimpleSpanProcessor(exporter)])
    server = grpc.aio.server(interceptors=[ServerSpans(tracing)])
    app = _Server(tracing)
    server.add_generic_rpc_handlers((app.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield app, exporter, channel
    finally:
        await channel.close(None)
        await server.stop(None)
        tracing.shutdown()


async def _call(channel: grpc.aio.Channel, method: str, metadata: tuple[tuple[str, str], ...] = ()) -> bytes:
    call = channel.unary_unary(f"/{_SERVICE}/{method}", request_serializer=None, response_deserializer=None)
    reply: bytes = await call(b"hi", metadata=metadata, timeout=10.0)
    return reply


async def test_a_sampled_caller_gets_a_server_span_as_its_child(
    served: tuple[_Server, InMemorySpanExporter, grpc.aio.Channel],
) -> None:
    app, exporter, channel = served
    assert await _call(channel, "Echo", ((TRACEPARENT, _traceparent(True)),)) == b"hi"
    (span,) = exporter.get_finished_spans()
    assert span.name == f"{_SERVICE}/Echo" and span.kind is trace.SpanKind.SERVER
    assert span.context is not None and span.context.trace_id == _TRACE_ID
    assert span.parent is not None and span.parent.span_id == _PARENT_SPAN_ID
    assert span.attributes is not None and span.attributes["rpc.grpc.status_code"] == 0
    # Inside, the server span is current: what the handler passes on is its child.
    assert app.seen[-1][TRACEPARENT] == f"00-{_TRACE_ID:032x}-{span.context.span_id:016x}-01"


async def test_an_unsampled_caller_gets_no_span_and_its_trace_passes_on_unsampled(
    served: tuple[_Server, InMemorySpanExporter, grpc.aio.Channel],
) -> None:
    app, exporter, channel = served
    for _ in range(3):  # the wrapper is reused from the second call on: same behaviour
        assert await _call(channel, "Echo", ((TRACEPARENT, _traceparent(False)),)) == b"hi"
    assert exporter.get_finished_spans() == ()
    assert app.seen == [{TRACEPARENT: _traceparent(False)}] * 3


async def test_a_call_without_a_parent_is_decided_by_the_sampler_and_a_failure_names_its_status(
    served: tuple[_Server, InMemorySpanExporter, grpc.aio.Channel],
) -> None:
    app, exporter, channel = served
    assert await _call(channel, "Echo") == b"hi"
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await _call(channel, "Fail", ((TRACEPARENT, _traceparent(True)),))
    assert failed.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    root, failure = exporter.get_finished_spans()
    assert root.parent is None and root.context is not None and root.context.trace_id != _TRACE_ID
    assert app.seen[-1][TRACEPARENT].split("-")[1] == f"{root.context.trace_id:032x}"
    assert failure.attributes is not None
    assert failure.attributes["rpc.grpc.status_code"] == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert failure.status.description == "FAILED_PRECONDITION: no"
