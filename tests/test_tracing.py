"""Tracing on the real broker: one trace from the browser's traceparent to the emissions.

The services run in-process, each with its own SDK provider (its own
service.name) exporting to one InMemorySpanExporter; the "browser" is a
grpc-web client through the real gateway sending a W3C traceparent.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
import pytest
from conftest import InProcessStack
from google.protobuf.message import Message
from grpc_web_client import call
from kafka_inspect import read_topic
from myko_client import Stream, items, pack, visible
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id
from targets.v1 import commands_pb2, entities_pb2, queries_pb2, reports_pb2

from bench.span_tree import render
from myko.app import App
from myko.gateway.server import Gateway
from myko.logs import JsonFormatter, _LineContext
from myko.saga_service import SagaService
from myko.settings import GatewaySettings, SagaSettings, TracingSettings
from myko.trace_export import build_tracing
from myko.tracing import (
    SPAN_COMMIT,
    SPAN_HANDLE,
    SPAN_KAFKA_COMMIT,
    SPAN_REPO_APPLY,
    SPAN_SAGA_EVENT,
    TRACEPARENT,
    Tracing,
)
from myko.v1 import command_pb2

pytestmark = pytest.mark.kafka

EXECUTE = "myko.v1.CommandBus/Execute"
R = TypeVar("R", bound=Message)


@dataclass
class Traced:
    exporter: InMemorySpanExporter
    stack: InProcessStack
    tracings: list[Tracing]

    def spans(self) -> Sequence[ReadableSpan]:
        return self.exporter.get_finished_spans()

    async def wait_for(
        self, what: str, found: Callable[[Sequence[ReadableSpan]], bool]
    ) -> Sequence[ReadableSpan]:
        """Spans end (and are exported) as the work finishes: poll, bounded."""
        async with asyncio.timeout(20):
            while not found(spans := self.spans()):  # noqa: ASYNC110 (the exporter has no event)
                await asyncio.sleep(0.05)
        return spans


@pytest.fixture
async def traced(myko_env: dict[str, str], example_app: App) -> AsyncIterator[Traced]:
    exporter = InMemorySpanExporter()
    tracings: list[Tracing] = []

    def tracing(service: str) -> Tracing:
        t = build_tracing(TracingSettings(), service=service, processors=[SimpleSpanProcessor(exporter)])
        tracings.append(t)
        return t

    stack = await InProcessStack.start(myko_env, example_app, tracing=tracing)
    try:
        yield Traced(exporter, stack, tracings)
    finally:
        await stack.stop()
        for t in tracings:
            t.shutdown()


def browser_traceparent() -> tuple[str, str, str]:
    """A sampled W3C traceparent as a browser page would send it: (header, trace id, span id)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def named(spans: Sequence[ReadableSpan], name: str, trace_id: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name and s.context is not None and _tid(s) == trace_id]


def _tid(span: ReadableSpan) -> str:
    assert span.context is not None
    return format_trace_id(span.context.trace_id)


def _sid(span: ReadableSpan) -> str:
    assert span.context is not None
    return format_span_id(span.context.span_id)


def parent_of(span: ReadableSpan) -> str | None:
    return format_span_id(span.parent.span_id) if span.parent is not None else None


def linking_to(spans: Sequence[ReadableSpan], name: str, target: ReadableSpan) -> list[ReadableSpan]:
    """Spans called `name` with a link to `target`."""
    assert target.context is not None
    return [
        s
        for s in spans
        if s.name == name and any(link.context.span_id == target.context.span_id for link in s.links)
    ]


async def read_until(stream: Stream[R], done: Callable[[R], bool]) -> R:
    async with asyncio.timeout(20):
        while True:
            result = await stream.read()
            if done(result):
                return result


async def test_one_trace_links_browser_command_kafka_write_and_emissions(
    traced: Traced, example_app: App
) -> None:
    stack = traced.stack
    gateway_tracing = build_tracing(
        TracingSettings(), service="gateway", processors=[SimpleSpanProcessor(traced.exporter)]
    )
    gateway = Gateway(
        GatewaySettings(
            port=0,
            command_addr=f"127.0.0.1:{stack.command.grpc.port}",
            query_addr=f"127.0.0.1:{stack.query.grpc.port}",
            report_addr=f"127.0.0.1:{stack.report.grpc.port}",
        ),
        tracing=gateway_tracing,
    )
    await gateway.start()
    targets = stack.clients.watch(queries_pb2.AllTargets())
    counts = stack.clients.watch_report(reports_pb2.TargetCountsByStatus())
    try:
        await targets.read()  # the snapshots: nothing to link yet
        await counts.read()
        header, trace_id, browser_span = browser_traceparent()
        request = command_pb2.CommandRequest(
            tx="0b0e5e3c-5f0c-4d5e-9c1a-3a7b8c9d0e1f", command=pack(commands_pb2.SetTarget(name="traced"))
        )
        async with aiohttp.ClientSession() as http:
            reply = await call(
                http,
                f"http://127.0.0.1:{gateway.port}/{EXECUTE}",
                request.SerializeToString(),
                headers={TRACEPARENT: header},
            )
        assert reply.code == 0, reply.message
        result = command_pb2.CommandResult.FromString(reply.messages[0])
        (event,) = result.events
        shown = await read_until(targets, lambda r: visible(result, r.watermark))
        assert [t.name for t in items(shown, entities_pb2.Target)] == ["traced"]
        await read_until(counts, lambda r: visible(result, r.watermark))

        def complete(spans: Sequence[ReadableSpan]) -> bool:
            writes = named(spans, SPAN_KAFKA_COMMIT, trace_id)
            if len(writes) != 1:
                return False
            kafka = writes[0]
            return bool(named(spans, f"POST /{EXECUTE}", trace_id)) and all(
                linking_to(spans, n, kafka) for n in (SPAN_REPO_APPLY, "myko.query.emit", "myko.report.emit")
            )

        spans = await traced.wait_for("the command's spans and the emissions linked to it", complete)
    finally:
        targets.cancel()
        counts.cancel()
        await gateway.stop()
        gateway_tracing.shutdown()

    tree = render(spans, int(trace_id, 16))
    print(f"\n{tree}")  # `pytest -s` shows the trace docs/observability.md quotes

    # The browser's span is the gateway's parent; everything after is one trace.
    (http_span,) = named(spans, f"POST /{EXECUTE}", trace_id)
    assert parent_of(http_span) == browser_span and http_span.kind is SpanKind.SERVER
    (server,) = named(spans, EXECUTE, trace_id)
    assert parent_of(server) == _sid(http_span), tree
    assert server.attributes is not None and server.attributes["myko.tx"] == request.tx
    assert server.attributes["rpc.grpc.status_code"] == 0
    (handle,) = named(spans, SPAN_HANDLE, trace_id)
    (commit,) = named(spans, SPAN_COMMIT, trace_id)
    (kafka,) = named(spans, SPAN_KAFKA_COMMIT, trace_id)
    assert parent_of(handle) == parent_of(commit) == _sid(server), tree
    assert parent_of(kafka) == _sid(commit) and kafka.kind is SpanKind.PRODUCER, tree
    assert {_tid(s) for s in (http_span, server, handle, commit, kafka)} == {trace_id}

    # The Kafka write carries the context: on the event record and on the tx-log record.
    expected = f"00-{trace_id}-{_sid(kafka)}-01".encode()
    kafka_settings = stack.command.settings.kafka
    (record,) = [
        r
        for r in await read_topic(kafka_settings.bootstrap_servers, event.offset.topic)
        if r.offset == event.offset.offset and r.partition == event.offset.partition
    ]
    assert (TRACEPARENT, expected) in record.headers
    (tx_record,) = [
        r
        for r in await read_topic(kafka_settings.bootstrap_servers, stack.command.txlog.topic)
        if r.key == request.tx.encode()
    ]
    assert (TRACEPARENT, expected) in tx_record.headers

    # repo_svc's batch and the first emissions showing the write link to it.
    for name, service in (
        (SPAN_REPO_APPLY, "repo_svc"),
        ("myko.query.emit", "query_svc"),
        ("myko.report.emit", "report_svc"),
    ):
        (linked,) = linking_to(spans, name, kafka)
        assert linked.resource.attributes["service.name"] == service
        assert linked.parent is None  # a root of its own: batches carry many commands
    (emission,) = linking_to(spans, "myko.query.emit", kafka)
    assert emission.attributes is not None and emission.attributes["myko.type"] == "targets.v1.AllTargets"


async def test_a_sagas_command_is_a_child_of_the_event_that_caused_it(
    traced: Traced, example_app: App
) -> None:
    stack = traced.stack
    env = {
        **stack.env,
        "MYKO_COMMAND_ADDR": f"127.0.0.1:{stack.command.grpc.port}",
        "MYKO_SAGA_PORT": "0",
        "MYKO_SAGA_GROUP_ID": "saga",
    }
    saga_tracing = build_tracing(
        TracingSettings(), service="saga_svc", processors=[SimpleSpanProcessor(traced.exporter)]
    )
    sagas = SagaService(SagaSettings.from_env(env), example_app, tracing=saga_tracing)
    async with asyncio.timeout(60):
        await sagas.start()
    try:
        header, trace_id, _ = browser_traceparent()
        call = stack.clients.command.unary_unary(
            f"/{EXECUTE}",
            request_serializer=command_pb2.CommandRequest.SerializeToString,
            response_deserializer=command_pb2.CommandResult.FromString,
        )
        zone = await call(
            command_pb2.CommandRequest(
                tx="7d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d", command=pack(commands_pb2.SetZone(name="north"))
            ),
            metadata=((TRACEPARENT, header),),
            timeout=15,
        )
        assert zone.events[0].type == "targets.v1.Zone"

        def perimeter_committed(spans: Sequence[ReadableSpan]) -> bool:
            # The zone's write, then the perimeter target's, and the saga's handling, in the same trace.
            return len(named(spans, SPAN_KAFKA_COMMIT, trace_id)) == 2 and any(
                s.attributes is not None and s.attributes["myko.saga"] == "zone-perimeter"
                for s in named(spans, SPAN_SAGA_EVENT, trace_id)
            )

        spans = await traced.wait_for("the saga's command committed in the zone's trace", perimeter_committed)
    finally:
        await sagas.stop()
        saga_tracing.shutdown()
    tree = render(spans, int(trace_id, 16))
    print(f"\n{tree}")

    zone_write, perimeter_write = sorted(
        named(spans, SPAN_KAFKA_COMMIT, trace_id), key=lambda s: s.start_time or 0
    )
    (event,) = [
        s
        for s in named(spans, SPAN_SAGA_EVENT, trace_id)
        if s.attributes is not None and s.attributes["myko.saga"] == "zone-perimeter"
    ]
    assert parent_of(event) == _sid(zone_write) and event.kind is SpanKind.CONSUMER, tree
    assert event.resource.attributes["service.name"] == "saga_svc"
    # The saga's Execute, served by command_svc, is the event's child; its write follows.
    (saga_execute,) = [s for s in named(spans, EXECUTE, trace_id) if parent_of(s) == _sid(event)]
    (saga_commit,) = [s for s in named(spans, SPAN_COMMIT, trace_id) if parent_of(s) == _sid(saga_execute)]
    assert parent_of(perimeter_write) == _sid(saga_commit), tree


async def test_a_failed_command_logs_one_json_line_with_its_tx_and_trace(traced: Traced) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(_LineContext("command_svc"))
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("myko")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        header, trace_id, _ = browser_traceparent()
        tx = "5e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a4b"
        with pytest.raises(Exception, match="name"):
            await traced.stack.clients.command.unary_unary(
                f"/{EXECUTE}",
                request_serializer=command_pb2.CommandRequest.SerializeToString,
                response_deserializer=command_pb2.CommandResult.FromString,
            )(
                command_pb2.CommandRequest(tx=tx, command=pack(commands_pb2.SetTarget(name=""))),
                metadata=((TRACEPARENT, header),),
                timeout=15,
            )
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    failed = [line for line in lines if line.get("tx") == tx]
    assert len(failed) == 1, lines
    (line,) = failed
    assert line["code"] == "INVALID_ARGUMENT" and line["command_type"] == "targets.v1.SetTarget"
    assert line["service"] == "command_svc" and line["trace_id"] == trace_id
    assert line["level"] == "INFO"  # the caller's mistake, not the service's
