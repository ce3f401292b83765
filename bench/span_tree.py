"""One trace as text: its spans as a tree with timings, then the spans linked to it.

    +0.00 ms    5.31 ms  POST /myko.v1.CommandBus/Execute  [gateway]
    +0.87 ms    4.12 ms    myko.v1.CommandBus/Execute  [command_svc]
    ...
    linked to this trace:
    +3.90 ms    0.41 ms  myko.repo.apply  [repo_svc]  -> myko.kafka.commit

Offsets are from the start of the trace's first span; every span's own
duration follows. tests/test_tracing.py prints the trace of a command sent
through the gateway with it (docs/observability.md shows one).
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import format_trace_id

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
