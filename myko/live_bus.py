"""QueryBus and ReportBus: live evaluations of registered handlers over a Store.

Both buses are the same machine with a different result shape: a query emits
the full ordered array of entities, a report one typed value.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message
from reactivex import Observable

from myko.app import HandlerRegistry
from myko.authentication import Authenticator
from myko.command_bus import type_name_of
from myko.errors import (
    DeadlineExceeded,
    InternalError,
    InvalidArgument,
    MykoError,
    ResourceExhausted,
    UnknownType,
    echo,
)
from myko.heap_trim import HeapTrimmer
from myko.live import Build, LiveHub, Sink, Subscription
from myko.live_kind import LiveKind
from myko.metrics.rpc import RpcMetrics
from myko.principal import Principal
from myko.query_result_encoder import QueryResultEncoder
from myko.query_window import SharedOrder, WindowResult
from myko.repo import EntityWatch, Store
from myko.rpc import Ctx, register_service, stream_method, unary_method
from myko.stream_guard import StreamGuard
from myko.v1 import item_pb2, query_pb2, report_pb2
from myko.watermark import Watermark, fence_of

log = logging.getLogger(__name__)

# The longest a call waits for a fence or a Get for its first value (less when
# the caller's deadline is nearer); then DEADLINE_EXCEEDED.
MAX_FENCE_WAIT_S = 10.0
DEFAULT_MAX_STREAMS = 10_000
# How long the order behind a windowed query outlives its last window: a UI turning
# pages closes one window and opens the next; the order is then still there.
ORDER_LINGER_S = 10.0


def _pack(msg: Message) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(msg, deterministic=True)
    return out


class LiveBus:
    def __init__(
        self,
        *,
        kind: LiveKind,
        registry: HandlerRegistry[Any],
        store: Store,
        hub: LiveHub,
        auth: Authenticator,
        max_streams: int = DEFAULT_MAX_STREAMS,
        heap: HeapTrimmer | None = None,
    ) -> None:
        self.kind = kind
        self._heap = heap if heap is not None else HeapTrimmer(threshold_bytes=0)
        self._registry = registry
        self._store = store
        self._hub = hub
        self._auth = auth
        self.guard = StreamGuard(auth)
        self._max_streams = max_streams
        self._streams = 0
        self._orders = SharedOrders(ORDER_LINGER_S)
        # The store's watermark as a proto, made once per watermark (the store replaces it
        # on each batch, never changes it): a batch that changes 100 results stamps all
        # 100 with it, and building it was ~30% of evaluating a TargetById.
        self._stamp: tuple[Watermark, item_pb2.Watermark] | None = None

    def _watermark(self) -> item_pb2.Watermark:
        """The store's watermark now, as a proto. Shared: read it (copy into a result), never change it."""
        wm = self._store.watermark
        stamp = self._stamp
        if stamp is None or stamp[0] is not wm:
            stamp = self._stamp = (wm, wm.to_proto())
        return stamp[1]

    def close(self) -> None:
        """Drop the shared orders of windowed queries (the hub closes the evaluations)."""
        self._orders.close()

    def _build(self, name: str, windowed: bool) -> Any:
        watermark = self._watermark
        # A large result leaves freed pages in the C heap once sent: hand them back.
        note = self._heap.note
        if self.kind is LiveKind.QUERY:
            # One per evaluation (build is made for each new one): it keeps the
            # entities' encodings of the last emission for the next.
            encoder = QueryResultEncoder(name)

            if windowed:

                def build_window(value: WindowResult[Message], seq: int) -> bytes:
                    window = query_pb2.ResultWindow(
                        offset=value.offset, total=value.total or 0, counted=value.total is not None
                    )
                    out = encoder.encode(value.items, watermark(), seq, window)
                    note(len(out))
                    return out

                return build_window

            def build_query(value: Sequence[Message], seq: int) -> bytes:
                out = encoder.encode(value, watermark(), seq)
                note(len(out))
                return out

            return build_query

        def build_report(value: Message, seq: int) -> bytes:
            out: bytes = report_pb2.ReportResult(
                report_type=name, value=_pack(value), watermark=watermark(), seq=seq
            ).SerializeToString()
            note(len(out))
            return out

        return build_report

    async def open(
        self,
        packed: any_pb2.Any,
        fence: item_pb2.Watermark,
        context: Ctx,
        principal: Principal,
        sink: Sink | None = None,
    ) -> Subscription:
        plan = await self._plan(packed, fence, context, principal)
        return self._hub.open(plan.key, plan.make_source, plan.build, type_name=plan.name, sink=sink)

    async def _plan(
        self, packed: any_pb2.Any, fence: item_pb2.Watermark, context: Ctx, principal: Principal
    ) -> _Plan:
        """Everything a subscription needs before it starts: the type is known, the caller
        may call it, the parameters decode, the store has reached the fence."""
        name = type_name_of(packed.type_url, self.kind.value)
        reg = self._registry.get(name)
        if reg is None:
            raise UnknownType(self.kind.value, name)
        reg.allow.check(principal, f"{self.kind.value} {name}")
        # The caller's slice of the rows; "" when the type declares no scope.
        scope_key = reg.scope.key(principal) if reg.scope is not None else None
        try:
            params = reg.message.FromString(packed.value)
        except DecodeError:
            raise InvalidArgument(self.kind.value, f"cannot decode as {name}") from None
        window = reg.window
        spec = None
        if window is not None:
            spec = window.of(params)
            window.normalise(params, spec)
        if fence.positions:
            needed = fence_of(fence, topics=self._store.topics, known=self._store.watermark)
            await self._store.wait_for(needed, timeout_s=_wait_limit(context, MAX_FENCE_WAIT_S))
        # Shared within a scope key, never across: the handler sees nothing else of the caller.
        key = (name, canonical_bytes(params), scope_key or "")

        def call_handler() -> Observable[Any]:
            try:
                if scope_key is None:
                    source = reg.handler(params, self._store)
                else:
                    source = reg.handler(params, self._store, scope_key)
            except MykoError:
                raise
            except Exception as exc:
                internal = InternalError()
                log.error(
                    "%s handler for %s failed (ref %s)", self.kind.value, name, internal.ref, exc_info=exc
                )
                raise internal from exc
            if not isinstance(source, Observable):
                internal = InternalError()
                log.error(
                    "%s handler for %s returned %s, not an Observable (ref %s)",
                    self.kind.value,
                    name,
                    type(source).__name__,
                    internal.ref,
                )
                raise internal
            return source

        make_source = call_handler
        if spec is not None and window is not None:
            # Every window of the same query, parameters and scope (page 1, page 2, ...)
            # is a slice of one shared order: a new page costs a slice, not a sort.
            order_key = (name, canonical_bytes(window.without_window(params)), scope_key or "")
            window_spec, total = spec, window.total

            def make_window() -> Observable[Any]:
                order = self._orders.get(order_key)
                if order is None:
                    source = call_handler()
                    if not isinstance(source, EntityWatch):
                        internal = InternalError()
                        log.error(
                            "query %s declares a window, but its handler returned %s, not a Repo.watch(...)"
                            " (ref %s)",
                            name,
                            type(source).__name__,
                            internal.ref,
                        )
                        raise internal
                    order = self._orders.start(order_key, source)
                return order.window(window_spec, total=total)

            make_source = make_window

        return _Plan(name, key, make_source, self._build(name, spec is not None), windowed=spec is not None)

    async def watch(
        self, packed: any_pb2.Any, fence: item_pb2.Watermark, context: Ctx
    ) -> AsyncIterator[bytes]:
        if self._streams >= self._max_streams:
            raise ResourceExhausted(
                f"this {self.kind.value} service has {self._streams} open streams, its limit"
                " (MYKO_MAX_STREAMS); retry later or on another replica"
            )
        self._streams += 1
        try:
            principal = await self._auth.from_metadata(context.invocation_metadata())
            with (
                await self.open(packed, fence, context, principal) as sub,
                self.guard.watching(principal, sub.fail),
            ):
                while True:
                    yield await sub.next()
        finally:
            self._streams -= 1

    async def get(self, packed: any_pb2.Any, fence: item_pb2.Watermark, context: Ctx) -> bytes:
        principal = await self._auth.from_metadata(context.invocation_metadata())
        plan = await self._plan(packed, fence, context, principal)
        make_source = plan.make_source
        if not plan.windowed and not self._hub.live(plan.key):
            # Nobody watches it: answer from the handler's first array without starting
            # a live evaluation (subscribing a watch costs more than reading an index).
            source = make_source()
            if isinstance(source, EntityWatch):
                payload = plan.build(source.array_now(), 1)
                self._hub.answered(plan.name, payload)
                return payload

            def made() -> Observable[Any]:
                return source  # the handler ran once already

            make_source = made
        with self._hub.open(plan.key, make_source, plan.build, type_name=plan.name) as sub:
            limit = _wait_limit(context, MAX_FENCE_WAIT_S)
            try:
                async with asyncio.timeout(limit):
                    return await sub.next()
            except TimeoutError:
                raise DeadlineExceeded(
                    f"{self.kind.value} {name_of(packed)} produced no result within {limit:.1f}s"
                ) from None

    @property
    def open_streams(self) -> int:
        return self._streams


@dataclass(frozen=True)
class _Plan:
    """A subscription ready to start (LiveBus._plan): its evaluation's key and how to
    make its source and payloads."""

    name: str
    key: Hashable
    make_source: Callable[[], Observable[Any]]
    build: Build
    windowed: bool


class SharedOrders:
    """Windowed queries' SharedOrders by (query, parameters but the window, scope key).

    An order no window uses any more is kept `linger_s` (the next page usually
    follows at once), then closed. Keys come from open subscriptions, so their
    number is bounded by the streams opened within `linger_s`."""

    def __init__(self, linger_s: float) -> None:
        self._linger_s = linger_s
        self._by_key: dict[Hashable, SharedOrder[Any]] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, key: Hashable) -> SharedOrder[Any] | None:
        return self._by_key.get(key)

    def start(self, key: Hashable, watch: EntityWatch[Any]) -> SharedOrder[Any]:
        order = watch.ordered(on_idle=lambda o: self._idle(key, o))
        self._by_key[key] = order
        return order

    def _idle(self, key: Hashable, order: SharedOrder[Any]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._drop_if_idle(key, order)
            return
        loop.call_later(self._linger_s, self._drop_if_idle, key, order)

    def _drop_if_idle(self, key: Hashable, order: SharedOrder[Any]) -> None:
        if order.windows == 0 and self._by_key.get(key) is order:
            del self._by_key[key]
            order.close()

    def close(self) -> None:
        for order in self._by_key.values():
            order.close()
        self._by_key.clear()


def canonical_bytes(params: Message) -> bytes:
    """The evaluation key of a query's or report's parameters.

    Unknown fields are dropped (a client cannot split one evaluation into many by
    appending fields nobody reads) and the encoding is deterministic, so equal
    parameters give equal keys however the client encoded them.
    """
    params.DiscardUnknownFields()
    return params.SerializeToString(deterministic=True)


def name_of(packed: any_pb2.Any) -> str:
    return echo(packed.type_url.rsplit("/", 1)[-1])


def _wait_limit(context: Ctx, cap_s: float) -> float:
    """How long a call may wait: `cap_s`, or less when the caller's deadline is nearer."""
    remaining = context.time_remaining()
    return cap_s if remaining is None else max(0.0, min(cap_s, remaining))


_REQUESTS: dict[LiveKind, type[Message]] = {
    LiveKind.QUERY: query_pb2.QueryRequest,
    LiveKind.REPORT: report_pb2.ReportRequest,
}


def register_live_bus(server: grpc.aio.Server, bus: LiveBus, metrics: RpcMetrics | None = None) -> None:
    """Serve `bus` as myko.v1.QueryBus or myko.v1.ReportBus, by its kind."""
    request_cls = _REQUESTS[bus.kind]
    field = bus.kind.request_field

    def watch(req: Any, ctx: Ctx) -> AsyncIterator[bytes]:
        return bus.watch(getattr(req, field), req.at_least, ctx)

    def get(req: Any, ctx: Ctx) -> Awaitable[bytes]:
        return bus.get(getattr(req, field), req.at_least, ctx)

    register_service(
        server,
        bus.kind.service,
        {
            "Watch": stream_method(watch, request_cls, name=f"{bus.kind.service}/Watch", metrics=metrics),
            "Get": unary_method(get, request_cls, name=f"{bus.kind.service}/Get", metrics=metrics),
        },
    )
