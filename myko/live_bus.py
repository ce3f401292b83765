"""QueryBus and ReportBus: live evaluations of registered handlers over a Store.

Both buses are the same machine with a different result shape: a query emits
the full ordered array of entities, a report one typed value.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Sequence
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
from myko.live import LiveHub, Sink, Subscription
from myko.live_kind import LiveKind
from myko.metrics.rpc import RpcMetrics
from myko.principal import Principal
from myko.query_result_encoder import QueryResultEncoder
from myko.repo import Store
from myko.rpc import Ctx, register_service, stream_method, unary_method
from myko.stream_guard import StreamGuard
from myko.v1 import item_pb2, query_pb2, report_pb2
from myko.watermark import fence_of

log = logging.getLogger(__name__)

# The longest a call waits for a fence or a Get for its first value (less when
# the caller's deadline is nearer); then DEADLINE_EXCEEDED.
MAX_FENCE_WAIT_S = 10.0
DEFAULT_MAX_STREAMS = 10_000


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
    ) -> None:
        self.kind = kind
        self._registry = registry
        self._store = store
        self._hub = hub
        self._auth = auth
        self.guard = StreamGuard(auth)
        self._max_streams = max_streams
        self._streams = 0

    def _build(self, name: str) -> Any:
        store = self._store
        if self.kind is LiveKind.QUERY:
            # One per evaluation (build is made for each new one): it keeps the
            # entities' encodings of the last emission for the next.
            encoder = QueryResultEncoder(name)

            def build_query(value: Sequence[Message], seq: int) -> bytes:
                return encoder.encode(value, store.watermark.to_proto(), seq)

            return build_query

        def build_report(value: Message, seq: int) -> bytes:
            return report_pb2.ReportResult(
                report_type=name, value=_pack(value), watermark=store.watermark.to_proto(), seq=seq
            ).SerializeToString()

        return build_report

    async def open(
        self,
        packed: any_pb2.Any,
        fence: item_pb2.Watermark,
        context: Ctx,
        principal: Principal,
        sink: Sink | None = None,
    ) -> Subscription:
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
        if fence.positions:
            needed = fence_of(fence, topics=self._store.topics, known=self._store.watermark)
            await self._store.wait_for(needed, timeout_s=_wait_limit(context, MAX_FENCE_WAIT_S))
        # Shared within a scope key, never across: the handler sees nothing else of the caller.
        key = (name, canonical_bytes(params), scope_key or "")

        def make_source() -> Observable[Any]:
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

        return self._hub.open(key, make_source, self._build(name), type_name=name, sink=sink)

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
        with await self.open(packed, fence, context, principal) as sub:
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
