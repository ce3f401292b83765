"""QueryBus and ReportBus: live evaluations of registered handlers over a Store.

Both buses are the same machine with a different result shape: a query emits
the full ordered array of entities, a report one typed value.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message
from reactivex import Observable

from myko.app import HandlerRegistry
from myko.command_bus import type_name_of
from myko.errors import InvalidArgument, MykoError, UnknownType
from myko.live import LiveHub, Subscription
from myko.live_kind import LiveKind
from myko.repo import Store
from myko.rpc import Ctx, register_service, stream_method, unary_method
from myko.v1 import item_pb2, query_pb2, report_pb2
from myko.watermark import Watermark

MAX_FENCE_WAIT_S = 10.0


def _pack(msg: Message) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(msg, deterministic=True)
    return out


class LiveBus:
    def __init__(self, *, kind: LiveKind, registry: HandlerRegistry[Any], store: Store, hub: LiveHub) -> None:
        self.kind = kind
        self._registry = registry
        self._store = store
        self._hub = hub

    def _build(self, name: str) -> Any:
        store = self._store
        if self.kind is LiveKind.QUERY:

            def build_query(value: Sequence[Message], seq: int) -> bytes:
                return query_pb2.QueryResult(
                    query_type=name,
                    items=[_pack(e) for e in value],
                    watermark=store.watermark.to_proto(),
                    seq=seq,
                ).SerializeToString()

            return build_query

        def build_report(value: Message, seq: int) -> bytes:
            return report_pb2.ReportResult(
                report_type=name, value=_pack(value), watermark=store.watermark.to_proto(), seq=seq
            ).SerializeToString()

        return build_report

    async def open(self, packed: any_pb2.Any, fence: item_pb2.Watermark, context: Ctx) -> Subscription:
        name = type_name_of(packed.type_url, self.kind.value)
        reg = self._registry.get(name)
        if reg is None:
            raise UnknownType(self.kind.value, name)
        try:
            params = reg.message.FromString(packed.value)
        except DecodeError as exc:
            raise InvalidArgument(self.kind.value, f"cannot decode as {name}: {exc}") from None
        if fence.positions:
            remaining = context.time_remaining()
            limit = MAX_FENCE_WAIT_S if remaining is None else min(MAX_FENCE_WAIT_S, remaining)
            await self._store.wait_for(Watermark.from_proto(fence).positions, timeout_s=limit)
        key = (name, params.SerializeToString(deterministic=True))

        def make_source() -> Observable[Any]:
            try:
                source = reg.handler(params, self._store)
            except MykoError:
                raise
            except Exception as exc:
                raise MykoError(
                    f"{self.kind.value} handler for {name} failed: {type(exc).__name__}: {exc}"
                ) from exc
            if not isinstance(source, Observable):
                raise MykoError(f"{self.kind.value} handler for {name} must return an Observable")
            return source

        return self._hub.open(key, make_source, self._build(name))

    async def watch(
        self, packed: any_pb2.Any, fence: item_pb2.Watermark, context: Ctx
    ) -> AsyncIterator[bytes]:
        with await self.open(packed, fence, context) as sub:
            while True:
                yield await sub.next()

    async def get(self, packed: any_pb2.Any, fence: item_pb2.Watermark, context: Ctx) -> bytes:
        with await self.open(packed, fence, context) as sub:
            return await asyncio.wait_for(sub.next(), MAX_FENCE_WAIT_S)


_REQUESTS: dict[LiveKind, type[Message]] = {
    LiveKind.QUERY: query_pb2.QueryRequest,
    LiveKind.REPORT: report_pb2.ReportRequest,
}


def register_live_bus(server: grpc.aio.Server, bus: LiveBus) -> None:
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
        {"Watch": stream_method(watch, request_cls), "Get": unary_method(get, request_cls)},
    )
