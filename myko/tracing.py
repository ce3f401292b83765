"""Tracing: one W3C trace from the caller through command_svc and Kafka to the emissions.

A command's trace (docs/observability.md draws it, with every span's attributes):

    gateway   POST /myko.v1.CommandBus/Execute        parent: the browser's traceparent
    command   myko.v1.CommandBus/Execute                (server span, server_spans.py)
                myko.command.handle                    the handler, once per attempt
                myko.command.commit                    queued, validated, committed, read back
                  myko.kafka.commit                    the Kafka transaction; its context is the
                                                       traceparent header of every record written
    repo      myko.repo.apply                          LINKED to the records' traceparents
    query     myko.query.emit / myko.report.emit       LINKED to the same: the emission showing it
    saga      myko.saga.event                          CHILD of the event's traceparent; the
                myko.v1.CommandBus/Execute ...         commands it sends are its children

Batches and emissions are links, not children: one batch or emission carries
the writes of many commands, and a span has one parent.

A `Tracing` is built once per service at its entry point (trace_export.py makes
the SDK provider from TracingSettings) and handed to what makes spans;
`Tracing.off()`, what components get when nothing is passed, makes none and
costs a flag test.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# Links one batch or emission span keeps: the first commands of a batch are
# enough to find the rest (same records), and a span must stay small.
MAX_LINKS = 32

SPAN_HANDLE = "myko.command.handle"
SPAN_COMMIT = "myko.command.commit"
SPAN_KAFKA_COMMIT = "myko.kafka.commit"
SPAN_REPO_APPLY = "myko.repo.apply"
SPAN_SAGA_EVENT = "myko.saga.event"


def emit_span_name(kind: str) -> str:
    """`myko.query.emit` or `myko.report.emit`."""
    return f"myko.{kind}.emit"


Attributes = Mapping[str, AttributeValue]
Headers = Sequence[tuple[str, bytes | None]]


@dataclass(frozen=True, slots=True)
class AppliedBatch:
    """The batch a Store is applying now: the commands whose writes it carries."""

    # The W3C traceparent of each command's Kafka write (distinct, at most MAX_LINKS).
    traceparents: tuple[str, ...]
    # The same, parsed, for the spans made while the batch applies.
    links: tuple[Link, ...]
    # When the batch reached this service: where its emission spans start.
    started_ns: int


# The batch being applied in this task. Store notifications are synchronous, so
# whatever reacts to a batch (repo_svc's change streams, a live evaluation
# emitting) runs inside `Tracing.applying` and finds it here. A ContextVar, like
# OpenTelemetry's own current span: per task, never shared between requests.
_APPLYING: ContextVar[AppliedBatch | None] = ContextVar("myko_applying_batch", default=None)


def applying_batch() -> AppliedBatch | None:
    """The batch being applied by this task, if it carries traced commands."""
    return _APPLYING.get()


def traceparents_of(records: Iterable[Any]) -> tuple[str, ...]:
    """The distinct traceparent headers of Kafka records (at most MAX_LINKS), in order."""
    seen: dict[bytes, str] = {}
    for r in records:
        for key, value in r.headers:
            if key == TRACEPARENT and value:
                # Not ours if it does not decode; a bad header never costs the record (it is only a link).
                if value not in seen:
                    with contextlib.suppress(UnicodeDecodeError):
                        seen[value] = value.decode("ascii")
                break
        if len(seen) >= MAX_LINKS:
            break
    return tuple(seen.values())


class Tracing:
    """A service's tracer and the W3C propagation over gRPC metadata, HTTP and Kafka headers."""

    def __init__(
        self,
        provider: trace.TracerProvider | None = None,
        *,
        shutdown: Callable[[], None] | None = None,
        follows_parent: bool = False,
    ) -> None:
        self.enabled = provider is not None
        # The sampler keeps a child exactly when its parent was kept (parentbased_*):
        # a span under an unsampled parent would only be dropped, so none is made
        # (`skips`). Most commands are unsampled, and each span costs the sampler,
        # ids and two context switches, several times per command.
        self.follows_parent = follows_parent
        self._provider = provider or trace.NoOpTracerProvider()
        self.tracer = self._provider.get_tracer("myko")
        self._propagator = TraceContextTextMapPropagator()
        self._shutdown = shutdown

    @classmethod
    def off(cls) -> Tracing:
        return cls()

    def shutdown(self) -> None:
        """Export what is still buffered (the entry point calls it once, at exit)."""
        if self._shutdown is not None:
            self._shutdown()
            self._shutdown = None

    # --- incoming context ---------------------------------------------------
    def context_from(self, carrier: Mapping[str, str]) -> Context:
        """The remote parent in `traceparent`/`tracestate` (HTTP headers, metadata); empty if none."""
        return self._propagator.extract(carrier)

    def context_from_metadata(self, metadata: Iterable[Any] | None) -> Context:
        carrier: dict[str, str] = {}
        for entry in metadata or ():
            key, value = entry if isinstance(entry, tuple) else (entry.key, entry.value)
            if key in (TRACEPARENT, TRACESTATE) and isinstance(value, str):
                carrier[key] = value
        return self.context_from(carrier)

    def context_from_record(self, headers: Headers) -> Context | None:
        """The parent a Kafka record names in its traceparent header; None if it names none."""
        for key, value in headers:
            if key == TRACEPARENT and value:
                try:
                    ctx = self.context_from({TRACEPARENT: value.decode("ascii")})
                except UnicodeDecodeError:
                    return None
                return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None
        return None

    # --- outgoing context ---------------------------------------------------
    def carrier(self, context: Context | None = None) -> dict[str, str]:
        """`traceparent` (and `tracestate`) of the current span, or of the span in `context`."""
        out: dict[str, str] = {}
        if self.enabled:
            self._propagator.inject(out, context)
        return out

    def metadata(self, context: Context | None = None) -> tuple[tuple[str, str], ...]:
        """The trace context as gRPC call metadata."""
        return tuple(self.carrier(context).items())

    def record_headers(self, context: Context | None = None) -> list[tuple[str, bytes]]:
        """The trace context as Kafka record headers."""
        return [(k, v.encode("ascii")) for k, v in self.carrier(context).items()]

    def links(self, traceparents: Iterable[str]) -> tuple[Link, ...]:
        out = []
        for tp in traceparents:
            sc = trace.get_current_span(self.context_from({TRACEPARENT: tp})).get_span_context()
            if sc.is_valid:
                out.append(Link(sc))
        return tuple(out[:MAX_LINKS])

    # --- spans --------------------------------------------------------------
    def skips(self, context: Context | None = None) -> bool:
        """True when a span under `context` (default: the current one) would not be recorded,
        known without asking the sampler: tracing is off, or its parent is unsampled and
        the sampler follows the parent."""
        if not self.enabled:
            return True
        if not self.follows_parent:
            return False
        parent = trace.get_current_span(context).get_span_context()
        return parent.is_valid and not parent.trace_flags.sampled

    @contextlib.contextmanager
    def span(
        self,
        name: str,
        *,
        kind: SpanKind = SpanKind.INTERNAL,
        context: Context | None = None,
        attributes: Attributes | None = None,
    ) -> Iterator[Span]:
        """A span made current for the block; an exception marks it failed and passes on.

        The exception's type and message become the span's status; its traceback
        is not recorded (costly, and a rejected command is not a fault).
        """
        if self.skips(context):
            # The current context stays the parent's: what is propagated from inside
            # names the same (unsampled) trace as before.
            yield trace.INVALID_SPAN
            return
        with self.tracer.start_as_current_span(
            name, context=context, kind=kind, attributes=attributes, record_exception=False
        ) as s:
            yield s

    @contextlib.contextmanager
    def applying(
        self,
        traceparents: Sequence[str],
        *,
        span_name: str | None = None,
        attributes: Attributes | None = None,
    ) -> Iterator[AppliedBatch | None]:
        """Around applying a batch that carries these commands' writes.

        Emission spans made meanwhile link to them (`emission`); with `span_name`,
        a span for the whole batch does too. Nothing happens when tracing is off
        or no traced command is in the batch.
        """
        if not self.enabled or not traceparents:
            yield None
            return
        links = self.links(traceparents)
        if not any(link.context.trace_flags.sampled for link in links):
            yield None
            return
        batch = AppliedBatch(tuple(traceparents), links, time.time_ns())
        token = _APPLYING.set(batch)
        try:
            if span_name is None:
                yield batch
                return
            # A root of its own (no parent: a batch belongs to no one request).
            with self.tracer.start_as_current_span(
                span_name, context=Context(), kind=SpanKind.CONSUMER, attributes=attributes, links=links
            ):
                yield batch
        finally:
            _APPLYING.reset(token)

    def emission(self, name: str, attributes: Attributes) -> Span | None:
        """A span for an emission made while a traced batch applies, linked to its commands.

        It starts when the batch arrived; the caller ends it once the payload is out.
        """
        batch = _APPLYING.get()
        if batch is None:
            return None
        return self.tracer.start_span(
            name,
            context=Context(),
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            links=batch.links,
            start_time=batch.started_ns,
        )


def fail(span: Span, code: str, message: str) -> None:
    """Mark a span failed with a status name (a gRPC code) and a message."""
    if span.is_recording():
        span.set_attribute("rpc.grpc.status_code", code)
        span.set_status(Status(StatusCode.ERROR, f"{code}: {message}"))
