"""Log lines and tracing settings: what an operator sets and what a collector reads."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable, Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import DEFAULT_OFF
from opentelemetry.trace import Link, SpanContext, TraceFlags, format_span_id, format_trace_id

from myko.errors import ConfigError, PermissionDenied
from myko.logs import JsonFormatter, TextFormatter, _LineContext, configure_logging, fields, tx_context
from myko.metrics import Metrics
from myko.service_status import StatusReporter
from myko.settings import CommandSettings, GatewaySettings, QuerySettings, ReportSettings, TracingSettings
from myko.status_relay import RELAYED, check_status
from myko.trace_export import LinkedSampler, build_tracing
from myko.tracing import MAX_LINKS, TRACEPARENT, Tracing, traceparents_of
from myko.v1 import system_pb2

# Settings need an auth decision (docs/security.md); these tests are about logging and tracing.
BASE = {"MYKO_APP": "targets", "MYKO_AUTH_DISABLED": "true"}


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("myko.test", logging.WARNING, __file__, 1, message, (), None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_line_has_service_tx_trace_and_fields() -> None:
    exporter = InMemorySpanExporter()
    tracing = build_tracing(
        TracingSettings(), service="command_svc", processors=[SimpleSpanProcessor(exporter)]
    )
    stamp = _LineContext("command_svc")
    with tx_context("0b0e5e3c-5f0c-4d5e-9c1a-3a7b8c9d0e1f"), tracing.span("work") as span:
        record = _record("bad record %s", **fields(topic="t", offset=7, message="not a base key"))
        record.args = ("t/0@7",)
        stamp.filter(record)
    line = json.loads(JsonFormatter().format(record))
    sc = span.get_span_context()
    assert line["service"] == "command_svc" and line["level"] == "WARNING" and line["logger"] == "myko.test"
    assert line["message"] == "bad record t/0@7"  # a field never replaces a base key
    assert line["tx"] == "0b0e5e3c-5f0c-4d5e-9c1a-3a7b8c9d0e1f"
    assert line["trace_id"] == format_trace_id(sc.trace_id) and line["span_id"] == format_span_id(sc.span_id)
    assert line["topic"] == "t" and line["offset"] == 7
    assert line["ts"].endswith("Z")


def test_lines_outside_a_request_have_no_tx_or_trace() -> None:
    record = _record("idle")
    _LineContext("repo_svc").filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert "tx" not in line and "trace_id" not in line
    assert TextFormatter().format(record).endswith("myko.test: idle")


def test_text_line_tags_tx_and_trace_before_a_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("myko.x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    record.tx, record.trace_id = "tx-1", "abc"
    first, *rest = TextFormatter().format(record).split("\n")
    assert first.endswith("myko.x: failed [tx=tx-1 trace=abc]")
    assert rest[-1] == "ValueError: boom"


def test_log_level_per_service_overrides_the_shared_one() -> None:
    env = {**BASE, "MYKO_LOG_LEVEL": "warning", "MYKO_COMMAND_LOG_LEVEL": "debug"}
    assert CommandSettings.from_env(env).log_level == "DEBUG"
    assert GatewaySettings.from_env(env).log_level == "WARNING"
    assert GatewaySettings.from_env({**env, "MYKO_GATEWAY_LOG_LEVEL": "ERROR"}).log_level == "ERROR"
    with pytest.raises(ConfigError, match="MYKO_COMMAND_LOG_LEVEL"):
        CommandSettings.from_env({**BASE, "MYKO_COMMAND_LOG_LEVEL": "LOUD"})
    with pytest.raises(ConfigError, match="MYKO_LOG_FORMAT"):
        CommandSettings.from_env({**BASE, "MYKO_LOG_FORMAT": "xml"})
    assert CommandSettings.from_env({**BASE, "MYKO_LOG_FORMAT": "JSON"}).log_format == "json"


def test_tracing_settings_follow_the_otel_variables() -> None:
    default = TracingSettings.from_env({})
    assert default.enabled and default.exporters == ("none",)
    assert (default.sampler, default.sampler_arg) == ("parentbased_traceidratio", 0.1)
    # A sampler named without its argument gets OpenTelemetry's default ratio, not ours.
    assert TracingSettings.from_env({"OTEL_TRACES_SAMPLER": "traceidratio"}).sampler_arg == 1.0
    # An endpoint alone turns the OTLP exporter on, as a collector's users expect.
    with_endpoint = TracingSettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"})
    assert with_endpoint.exporters == ("otlp",) and with_endpoint.otlp_endpoint == "http://collector:4317"
    traces_endpoint = TracingSettings.from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4317",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:4317",
        }
    )
    assert traces_endpoint.otlp_endpoint == "http://b:4317"
    ratio = TracingSettings.from_env(
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"}
    )
    assert ratio.sampler_arg == 0.25
    assert not TracingSettings.from_env({"OTEL_SDK_DISABLED": "true"}).enabled
    assert TracingSettings.from_env({"OTEL_TRACES_EXPORTER": "console,otlp"}).exporters == ("console", "otlp")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_EXPORTER": "none,otlp"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, "OTEL_TRACES_SAMPLER_ARG"),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"},
            "OTEL_TRACES_SAMPLER_ARG",
        ),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"OTEL_SDK_DISABLED": "yes"}, "OTEL_SDK_DISABLED"),
    ],
)
def test_bad_tracing_settings_fail_at_start_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        CommandSettings.from_env({**BASE, **env})


def test_disabled_tracing_makes_no_spans_and_passes_nothing_on() -> None:
    tracing = build_tracing(TracingSettings(enabled=False), service="command_svc")
    assert not tracing.enabled
    with tracing.span("work"):
        assert tracing.metadata() == () and tracing.record_headers() == []


def _context(sampled: bool) -> SpanContext:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return SpanContext(trace_id=0x1234, span_id=0x5678, is_remote=True, trace_flags=flags)


def test_a_batch_span_is_kept_when_a_linked_command_was_sampled() -> None:
    # Under a sampler that keeps no root span, a root linked to a sampled command is still kept,
    # and one linked only to unsampled commands is not.
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=LinkedSampler(DEFAULT_OFF))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    tracer.start_span("kept", links=[Link(_context(sampled=True))]).end()
    tracer.start_span("dropped", links=[Link(_context(sampled=False))]).end()
    tracer.start_span("root").end()
    assert [s.name for s in exporter.get_finished_spans()] == ["kept"]


def _ratio_tracing(sampler: str) -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    settings = TracingSettings.from_env({"OTEL_TRACES_SAMPLER": sampler, "OTEL_TRACES_SAMPLER_ARG": "1.0"})
    return build_tracing(settings, service="t", processors=[SimpleSpanProcessor(exporter)]), exporter


@pytest.mark.parametrize("sampled", [True, False])
def test_under_a_parent_based_sampler_a_span_is_made_only_under_a_sampled_parent(sampled: bool) -> None:
    # Most commands are unsampled: their spans are skipped, not made and dropped, and what
    # is propagated from inside still names the caller's trace, unsampled.
    tracing, exporter = _ratio_tracing("parentbased_traceidratio")
    parent = tracing.context_from(
        {TRACEPARENT: f"00-{0x1234:032x}-{0x5678:016x}-{'01' if sampled else '00'}"}
    )
    assert tracing.skips(parent) is not sampled
    with tracing.span("child", context=parent) as span:
        assert span.is_recording() is sampled
    assert [s.name for s in exporter.get_finished_spans()] == (["child"] if sampled else [])
    with tracing.span("root") as root:  # no parent: the sampler decides (ratio 1.0: kept)
        assert root.is_recording()
    assert not tracing.skips() and Tracing.off().skips()


def test_a_sampler_that_ignores_the_parent_still_decides_under_an_unsampled_one() -> None:
    tracing, exporter = _ratio_tracing("traceidratio")
    parent = tracing.context_from({TRACEPARENT: f"00-{0x1234:032x}-{0x5678:016x}-00"})
    assert not tracing.skips(parent)
    with tracing.span("child", context=parent):
        pass
    assert [s.name for s in exporter.get_finished_spans()] == ["child"]


class _Record:
    def __init__(self, headers: list[tuple[str, bytes | None]]) -> None:
        self.headers = headers


def test_traceparents_of_a_batch_are_distinct_bounded_and_skip_junk() -> None:
    tp = [f"00-{i:032x}-{i:016x}-01".encode() for i in range(1, MAX_LINKS + 10)]
    records = [_Record([("myko-op", b"SET"), (TRACEPARENT, t)]) for t in tp for _ in range(2)]
    records.insert(0, _Record([(TRACEPARENT, b"\xff\xfe")]))
    records.insert(0, _Record([(TRACEPARENT, None)]))
    found = traceparents_of(records)
    assert found == tuple(t.decode() for t in tp[:MAX_LINKS])
    links = Tracing(TracerProvider()).links(["not-a-traceparent", *found[:3]])
    assert [link.context.trace_id for link in links] == [1, 2, 3]


# -- status reports (myko/service_status.py, myko/status_relay.py) -------------------------------


class RecordingSink:
    """A StatusSink keeping what it was given."""

    def __init__(self) -> None:
        self.written: list[system_pb2.ServiceStatus] = []
        self.closed = False
        self._changed = asyncio.Event()

    async def until(self, done: Callable[[list[system_pb2.ServiceStatus]], bool]) -> None:
        while not done(self.written):
            self._changed.clear()
            await self._changed.wait()

    async def open(self) -> None:
        pass

    async def write(self, status: system_pb2.ServiceStatus, *, timeout_s: float) -> None:
        self.written.append(status)
        self._changed.set()

    async def close(self) -> None:
        self.closed = True


async def test_a_reporter_reports_a_health_change_at_once_and_stopped_last() -> None:
    settings = QuerySettings.from_env(
        {**BASE, "MYKO_INSTANCE_ID": "query-1", "MYKO_STATUS_INTERVAL_MS": "600000"}
    )
    sink = RecordingSink()
    serving = True
    reporter = StatusReporter(settings, sink, metrics=Metrics(), serving=lambda: serving)
    await reporter.start()
    try:
        async with asyncio.timeout(5):
            await sink.until(bool)
        serving = False  # a ten-minute interval does not hold a change back
        async with asyncio.timeout(5):
            await sink.until(lambda w: w[-1].state == system_pb2.SERVICE_STATE_NOT_SERVING)
    finally:
        await reporter.stop()
    states = [s.state for s in sink.written]
    assert states == [
        system_pb2.SERVICE_STATE_SERVING,
        system_pb2.SERVICE_STATE_NOT_SERVING,
        system_pb2.SERVICE_STATE_STOPPED,
    ]
    assert {s.service for s in sink.written} == {"query"} and {s.item.id for s in sink.written} == {"query-1"}
    assert sink.closed
    # Each report passes the checks repo_svc applies to a relayed one.
    for status in sink.written:
        check_status(status, "query", relayed=RELAYED)


def test_a_certificate_reports_for_its_own_live_service_only() -> None:
    settings = ReportSettings.from_env({**BASE, "MYKO_INSTANCE_ID": "report-1"})
    status = StatusReporter(settings, RecordingSink(), metrics=Metrics(), serving=lambda: True).status(
        system_pb2.SERVICE_STATE_SERVING
    )
    check_status(status, "report", relayed=RELAYED)
    check_status(status, None, relayed=RELAYED)  # plaintext: nobody is identified
    with pytest.raises(PermissionDenied, match="a query certificate reports for query"):
        check_status(status, "query", relayed=RELAYED)
    status.service = "saga"
    with pytest.raises(PermissionDenied, match="query, report only"):
        check_status(status, None, relayed=RELAYED)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def _grpc_core_reports(message: str) -> None:
    """What grpc's aio server does when it cannot write an answer (server.pyx.pxi)."""
    try:
        raise RuntimeError('Failed "execute_batch"')
    except RuntimeError:
        logging.getLogger("grpc._cython.cygrpc").exception(message, "/myko.v1.ReportBus/Get")


@pytest.mark.usefixtures("restore_logging")
def test_an_answer_to_a_departed_client_is_not_logged_as_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(service="report_svc", level="INFO")
    _grpc_core_reports("ExecuteBatchError raised in core by servicer method [%s]")
    assert capsys.readouterr().err == ""

    configure_logging(service="report_svc", level="DEBUG")
    _grpc_core_reports("ExecuteBatchError raised in core by servicer method [%s]")
    err = capsys.readouterr().err
    assert "DEBUG" in err and "/myko.v1.ReportBus/Get" in err and "client left" in err
    assert "Traceback" not in err

    # Anything else grpc's core reports keeps its level and its traceback.
    configure_logging(service="report_svc", level="INFO")
    _grpc_core_reports("Unexpected error in servicer method [%s]")
    err = capsys.readouterr().err
    assert "ERROR" in err and "Traceback" in err
