"""Shared live evaluations and per-client latest-value sinks.

Identical subscriptions (same type, same canonical parameters, same scope
key: myko/policy.py) share one evaluation: the handler's observable is subscribed once and each new value is
serialised once; every subscriber gets the same bytes. A subscriber keeps only
the latest payload it has not sent yet, so a slow client skips intermediate
values (it always ends on the newest) and never grows memory or slows others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from typing import Any, Protocol

from opentelemetry import trace
from prometheus_client import CollectorRegistry
from reactivex import Observable
from reactivex.abc import DisposableBase

from myko.errors import InternalError, MykoError, echo
from myko.metrics.live import LiveMetrics, LiveTypeMetrics
from myko.tracing import Tracing

log = logging.getLogger(__name__)

# (value, seq) -> serialised payload
Build = Callable[[Any, int], bytes]


class Sink(Protocol):
    """Where an evaluation hands its payloads: a Watch stream's LatestSink, or a LiveBus
    subscription on a multiplexed stream (myko/live_streams.py)."""

    def put(self, payload: bytes) -> None: ...

    def fail(self, exc: BaseException) -> None: ...


class LatestSink:
    """One subscriber: the newest unsent payload, or the error that ended the stream."""

    def __init__(self, metrics: LiveTypeMetrics) -> None:
        self._latest: bytes | None = None
        self._error: BaseException | None = None
        self._ready = asyncio.Event()
        self._metrics = metrics

    def put(self, payload: bytes) -> None:
        if self._error is not None:
            return  # ended: nothing more goes out, however fast the results change
        if self._latest is not None:
            self._metrics.coalesced.inc()
        self._latest = payload
        self._ready.set()

    def fail(self, exc: BaseException) -> None:
        # The error wins over a result not sent yet: a stream ended because its
        # token expired must not deliver one more value.
        self._error = exc
        self._latest = None
        self._ready.set()

    async def next(self) -> bytes:
        await self._ready.wait()
        self._ready.clear()
        if self._latest is not None:
            payload, self._latest = self._latest, None
            self._metrics.sent_messages.inc()
            self._metrics.sent_bytes.inc(len(payload))
            return payload
        assert self._error is not None
        raise self._error


class SharedEvaluation:
    def __init__(
        self, hub: LiveHub, key: Hashable, source: Observable[Any], build: Build, metrics: LiveTypeMetrics
    ) -> None:
        self._hub = hub
        self._key = key
        self._build = build
        self.metrics = metrics
        self._sinks: set[Sink] = set()
        self._built_at: Hashable = None
        self._last_value: Any = _NOTHING
        self._payload: bytes | None = None
        self._seq = 0
        self._error: BaseException | None = None
        self._subscription: DisposableBase | None = source.subscribe(
            on_next=self._on_next, on_error=self._on_error
        )

    @property
    def subscribers(self) -> int:
        return len(self._sinks)

    def _on_next(self, value: Any) -> None:
        if value == self._last_value:
            self.metrics.unchanged.inc()
            return  # the result did not change
        self._last_value = value
        self._seq += 1
        hub = self._hub
        # A change carrying traced commands: the emission's span, linked to them.
        span = hub.tracing.emission(hub.span_name, self._span_attributes()) if hub.tracing.enabled else None
        if span is None:
            self._emit(value)
            return
        with trace.use_span(span, end_on_exit=True):
            payload = self._emit(value)
            if payload is not None:
                span.set_attribute("myko.payload.bytes", len(payload))

    def _emit(self, value: Any) -> bytes | None:
        """Build the payload once and hand it to every subscriber; None when building failed."""
        try:
            payload = self._payload = self._build(value, self._seq)
            self._built_at = self._hub.position()
        except Exception as exc:
            self._on_error(exc)
            return None
        self.metrics.emissions.inc()
        for sink in self._sinks:
            sink.put(payload)
        return payload

    def _span_attributes(self) -> dict[str, str | int]:
        key = self._key
        name = key[0] if isinstance(key, tuple) and key and isinstance(key[0], str) else _describe(key)
        return {"myko.type": name, "myko.seq": self._seq, "myko.subscribers": len(self._sinks)}

    def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, MykoError):
            self._error = exc
        else:
            # The handler's own text stays here: callers get a reference to it.
            internal = InternalError()
            log.error("live evaluation %s failed (ref %s)", _describe(self._key), internal.ref, exc_info=exc)
            self._error = internal
        for sink in self._sinks:
            sink.fail(self._error)
        self._hub._forget(self._key, self)

    def attach(self, sink: Sink) -> None:
        self._sinks.add(sink)
        self.metrics.subscriptions.inc()
        if self._payload is not None and self._built_at != self._hub.position():
            # The value is current, but the cached payload names the watermark
            # of its last change: a newcomer (maybe fenced with at_least) gets
            # it stamped with where the store is now.
            self._payload = self._build(self._last_value, self._seq)
            self._built_at = self._hub.position()
        if self._payload is not None:
            sink.put(self._payload)
        elif self._error is not None:
            sink.fail(self._error)

    def detach(self, sink: Sink) -> None:
        if sink in self._sinks:
            self._sinks.discard(sink)
            self.metrics.subscriptions.dec()
        if not self._sinks:
            self.dispose()
            self._hub._forget(self._key, self)

    def dispose(self) -> None:
        if self._subscription is not None:
            self._subscription.dispose()
            self._subscription = None


class LiveHub:
    """Evaluations by key, alive while someone watches them.

    `position` tells where the underlying state is (the store's watermark);
    payloads carry it, so a cached payload is restamped when it moved.
    `metrics` gets each evaluation's and subscriber's activity, by `type_name`.
    With `tracing`, an emission of a change that carries traced commands gets a
    span (`span_name`) linked to them.
    """

    def __init__(
        self,
        position: Callable[[], Hashable] = lambda: None,
        *,
        metrics: LiveMetrics | None = None,
        tracing: Tracing | None = None,
        span_name: str = "myko.live.emit",
    ) -> None:
        self._evals: dict[Hashable, SharedEvaluation] = {}
        self.position = position
        self._metrics = metrics if metrics is not None else LiveMetrics(CollectorRegistry())
        self.tracing = tracing or Tracing.off()
        self.span_name = span_name

    def __len__(self) -> int:
        return len(self._evals)

    @property
    def subscribers(self) -> int:
        return sum(ev.subscribers for ev in self._evals.values())

    def live(self, key: Hashable) -> bool:
        """True while an evaluation for `key` runs (someone watches it)."""
        return key in self._evals

    def answered(self, type_name: str, payload: bytes) -> None:
        """Count a result made for one caller without an evaluation (a Get nobody watches)
        as an evaluation's emission to one subscriber would be counted."""
        metrics = self._metrics.of(type_name)
        metrics.emissions.inc()
        metrics.sent_messages.inc()
        metrics.sent_bytes.inc(len(payload))

    def open(
        self,
        key: Hashable,
        make_source: Callable[[], Observable[Any]],
        build: Build,
        *,
        type_name: str = "",
        sink: Sink | None = None,
    ) -> Subscription:
        """Join (or start) the evaluation for `key`. `make_source` runs only to start one,
        so a handler's validation errors reach the caller that starts it. Payloads go to
        `sink`, or (without) to a LatestSink the Subscription's `next()` reads."""
        ev = self._evals.get(key)
        if ev is None:
            metrics = self._metrics.of(type_name)
            ev = SharedEvaluation(self, key, make_source(), build, metrics)
            if ev._error is not None:
                raise ev._error
            self._evals[key] = ev
            metrics.evaluations.inc()
        if sink is None:
            sink = LatestSink(ev.metrics)
        ev.attach(sink)
        return Subscription(ev, sink)

    def _forget(self, key: Hashable, ev: SharedEvaluation) -> None:
        if self._evals.get(key) is ev:
            del self._evals[key]
            ev.metrics.evaluations.dec()

    def close(self) -> None:
        for ev in list(self._evals.values()):
            ev.dispose()
            ev.metrics.evaluations.dec()
        self._evals.clear()


class Subscription:
    def __init__(self, evaluation: SharedEvaluation, sink: Sink) -> None:
        self._evaluation = evaluation
        self._sink = sink

    async def next(self) -> bytes:
        """The next payload; only for a subscription opened without a sink of its own."""
        assert isinstance(self._sink, LatestSink), "this subscription delivers to its own sink"
        return await self._sink.next()

    def fail(self, exc: BaseException) -> None:
        """End this subscriber's stream with `exc` (its token expired, say); the others go on."""
        self._sink.fail(exc)

    def close(self) -> None:
        self._evaluation.detach(self._sink)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _describe(key: Hashable) -> str:
    """A key for a log line: (type name, parameters[, scope key]) with the parameters cut short."""
    if isinstance(key, tuple) and len(key) in (2, 3) and isinstance(key[1], bytes):
        scope = f" scope {echo(str(key[2]), 64)}" if len(key) == 3 and key[2] else ""
        return f"{key[0]} {echo(key[1].hex(), 64)}{scope}"
    return echo(str(key), 120)


class _Nothing:
    def __eq__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return 0


_NOTHING = _Nothing()
