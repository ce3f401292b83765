"""One trace as text: its spans as a tree with timings, then the spans linked to it.

    +0.00 ms    5.31 ms  POST /myko.v1.CommandBus/Execute  [gateway]
    +0.87 ms    4.12 ms    myko.v1.CommandBus/Execute  [command_svc]
    ...
    linked to this trace:
    +3.90 ms    0.41 ms  myko.repo.apply  [repo_svc]  -> myko.kafka.commit

Offsets are from the start of the trace's first span; every span's own
duration follows. tests/test_tracing.py prints the trace of a command sent
through the gateway with it. `python -m bench.span_tree DUMP [PATH]` prints,
from what bench/otlp_sink.py received from real services, each trace whose
gateway span proxied PATH (default: CommandBus/Execute), e.g. of a command
a browser sent (docs/observability.md shows one).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import Link, SpanContext, TraceFlags, format_trace_id

# Attributes worth a glance in a tree line; the rest stay in the exporter's output.
_SHOWN = (
    "myko.command.type",
    "myko.type",
    "myko.saga",
    "myko.batch.commands",
    "myko.seq",
    "rpc.grpc.status_code",
)


def _service(span: ReadableSpan) -> str:
    return str(span.resource.attributes.get("service.name", "?"))


def _ms(ns: int) -> str:
    return f"{ns / 1e6:8.2f} ms"


def _line(span: ReadableSpan, t0: int, depth: int, suffix: str = "") -> str:
    start, end = span.start_time or 0, span.end_time or 0
    attrs = span.attributes or {}
    shown = " ".join(f"{k}={attrs[k]!s}" for k in _SHOWN if k in attrs)
    return (
        f"{'+' + _ms(start - t0).strip():>12} {_ms(end - start)}  {'  ' * depth}{span.name}"
        f"  [{_service(span)}]{'  ' + shown if shown else ''}{suffix}"
    )


def render(spans: Sequence[ReadableSpan], trace_id: int) -> str:
    """The spans of `trace_id` as a tree, then every span linking to one of them."""
    ours = sorted((s for s in spans if s.context is not None and s.context.trace_id == trace_id), key=_start)
    if not ours:
        return f"trace {format_trace_id(trace_id)}: no spans"
    names = {s.context.span_id: s.name for s in ours if s.context is not None}
    children: dict[int | None, list[ReadableSpan]] = {}
    for s in ours:
        parent = s.parent.span_id if s.parent is not None and s.parent.span_id in names else None
        children.setdefault(parent, []).append(s)
    t0 = min(_start(s) for s in ours)
    lines = [f"trace {format_trace_id(trace_id)}"]

    def walk(parent: int | None, depth: int) -> None:
        for s in children.get(parent, []):
            lines.append(_line(s, t0, depth))
            assert s.context is not None
            walk(s.context.span_id, depth + 1)

    walk(None, 0)
    linked = sorted(
        (s for s in spans if s not in ours and any(link.context.trace_id == trace_id for link in s.links)),
        key=_start,
    )
    if linked:
        lines.append("linked to this trace:")
        for s in linked:
            targets = sorted(
                {
                    names.get(link.context.span_id, "?")
                    for link in s.links
                    if link.context.trace_id == trace_id
                }
            )
            lines.append(_line(s, t0, 0, f"  -> {', '.join(targets)}"))
    return "\n".join(lines)


def _start(span: ReadableSpan) -> int:
    return span.start_time or 0


# -- spans as bench/otlp_sink.py dumps them (OTLP protobuf) ---------------------------------------


def _value(v: AnyValue) -> str | int | float | bool:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind in ("string_value", "int_value", "double_value", "bool_value") else str(v)


def _context(trace_id: bytes, span_id: bytes) -> SpanContext:
    return SpanContext(
        int.from_bytes(trace_id, "big"),
        int.from_bytes(span_id, "big"),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )


def _readable(span: OtlpSpan, resource: Resource) -> ReadableSpan:
    return ReadableSpan(
        name=span.name,
        context=_context(span.trace_id, span.span_id),
        parent=_context(span.trace_id, span.parent_span_id) if span.parent_span_id else None,
        resource=resource,
        attributes={kv.key: _value(kv.value) for kv in span.attributes},
        links=[Link(_context(link.trace_id, link.span_id)) for link in span.links],
        start_time=span.start_time_unix_nano,
        end_time=span.end_time_unix_nano,
    )


def read_dump(path: Path) -> Iterator[ReadableSpan]:
    data = path.read_bytes()
    at = 0
    while at < len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        request = ExportTraceServiceRequest.FromString(data[at + 4 : at + 4 + size])
        at += 4 + size
        for rs in request.resource_spans:
            resource = Resource({kv.key: _value(kv.value) for kv in rs.resource.attributes})
            for ss in rs.scope_spans:
                for span in ss.spans:
                    yield _readable(span, resource)


def main(argv: Sequence[str]) -> int:
    if not argv:
        print("usage: python -m bench.span_tree DUMP [PATH]", file=sys.stderr)
        return 2
    path = argv[1] if len(argv) > 1 else "/myko.v1.CommandBus/Execute"
    spans = list(read_dump(Path(argv[0])))
    roots = [s for s in spans if s.name == f"POST {path}" and s.context is not None]
    for root in sorted(roots, key=_start):
        assert root.context is not None
        print(render(spans, root.context.trace_id))
        print()
    return 0 if roots else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
