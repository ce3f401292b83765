"""`Client.live()`: many typed subscriptions over a few LiveBus streams (myko.v1.LiveBus/Open).

    async with client.live() as live:
        targets = live.watch(AllTargets())          # LiveSubscription[list[Target]]
        counts = live.watch(TargetCountsByStatus())  # LiveSubscription[StatusCounts]
        async for value in targets:                  # opens the streams on first use
            ...

The set of subscriptions is fixed when the streams open (on the first `async
for`, or `await live.open()`); `watch` after that raises ConfigError. Query
subscriptions go to query_svc, report subscriptions to report_svc, at most
`max_per_stream` (the services' MYKO_MAX_SUBSCRIPTIONS_PER_STREAM) per stream.
Subscriptions to the same request are placed on the same stream and the streams
are opened with `group_results`, so the service sends a shared result once per
stream. Each subscription keeps only its newest unread value (like a Watch
whose reader is slow); one that fails raises its error from its own `async for`
while the others go on; a stream that ends fails every subscription on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, TypeVar, overload

import grpc
from google.protobuf.message import Message

from myko.client import AtLeast, Client, _items, _pack, _unpack, _watermark
from myko.contract import Query, Report
from myko.errors import ConfigError, MykoError, Unavailable
from myko.status import error_from_rpc, error_of
from myko.v1 import live_pb2, query_pb2, report_pb2

T = TypeVar("T", bound=Message)
V = TypeVar("V", bound=Message)
X = TypeVar("X")

_OPEN = "/myko.v1.LiveBus/Open"
_CODES = {code.value[0]: code for code in grpc.StatusCode}
# The services' default MYKO_MAX_SUBSCRIPTIONS_PER_STREAM.
DEFAULT_MAX_PER_STREAM = 256
_NOTHING: Any = object()


class LiveSubscription(Generic[X]):
    """One subscription's results, newest first-come: `async for value in sub`."""

    def __init__(self, live: Live, sub_id: str, convert: Callable[[Any], X]) -> None:
        self._live = live
        self.sub_id = sub_id
        self._convert = convert
        self._latest: Any = _NOTHING
        self._error: MykoError | None = None
        self._ready = asyncio.Event()

    def _put(self, raw: Any) -> None:
        if self._error is None:
            self._latest = raw
            self._ready.set()

    def _fail(self, error: MykoError) -> None:
        if self._error is None:
            self._error = error
            self._ready.set()

    def __aiter__(self) -> LiveSubscription[X]:
        return self

    async def __anext__(self) -> X:
        await self._live.open()
        while True:
            if self._latest is not _NOTHING:
                raw, self._latest = self._latest, _NOTHING
                return self._convert(raw)
            if self._error is not None:
                raise self._error
            self._ready.clear()
            await self._ready.wait()


class _Planned:
    __slots__ = ("key", "service", "sub", "subscription")

    def __init__(
        self, service: str, key: bytes, subscription: live_pb2.LiveSubscription, sub: LiveSubscription[Any]
    ) -> None:
        self.service = service
        self.key = key
        self.subscription = subscription
        self.sub = sub


class Live:
    """Made by `Client.live()`; an async context manager that closes its streams on exit."""

    def __init__(self, client: Client, *, max_per_stream: int, group_results: bool) -> None:
        self._client = client
        self._max_per_stream = max_per_stream
        self._group = group_results
        self._planned: list[_Planned] = []
        self._subs: dict[str, LiveSubscription[Any]] = {}
        self._ids = itertools.count(1)
        self._opening: asyncio.Task[None] | None = None
        self._calls: list[grpc.aio.UnaryStreamCall[Any, live_pb2.LiveFrame]] = []
        self._readers: list[asyncio.Task[None]] = []
        self._closed = False

    @property
    def streams(self) -> int:
        """How many streams the subscriptions were spread over (after opening)."""
        return len(self._calls)

    @overload
    def watch(self, request: Query[Any, T], *, at_least: AtLeast = None) -> LiveSubscription[list[T]]: ...
    @overload
    def watch(self, request: Report[Any, V], *, at_least: AtLeast = None) -> LiveSubscription[V]: ...
    def watch(self, request: object, *, at_least: AtLeast = None) -> LiveSubscription[Any]:
        """Subscribe to a query (its full array) or report (its value); before the streams open."""
        if self._opening is not None or self._closed:
            raise ConfigError(
                "a live stream's subscriptions are fixed once it opens; use another client.live()"
            )
        message, kind, result_cls = self._client._resolve(request)
        self._client._ready(kind)
        sub_id = f"s{next(self._ids)}"
        packed = _pack(message)
        if kind == "query":
            subscription = live_pb2.LiveSubscription(
                sub_id=sub_id, query=query_pb2.QueryRequest(query=packed, at_least=_watermark(at_least))
            )
            key = subscription.query.SerializeToString(deterministic=True)

            def convert_query(r: query_pb2.QueryResult) -> Any:
                return _items(r.items, result_cls, r.query_type)

            sub: LiveSubscription[Any] = LiveSubscription(self, sub_id, convert_query)
        else:
            subscription = live_pb2.LiveSubscription(
                sub_id=sub_id, report=report_pb2.ReportRequest(report=packed, at_least=_watermark(at_least))
            )
            key = subscription.report.SerializeToString(deterministic=True)

            def convert_report(r: report_pb2.ReportResult) -> Any:
                return _unpack(r.value, result_cls, r.report_type)

            sub = LiveSubscription(self, sub_id, convert_report)
        self._planned.append(_Planned(kind, key, subscription, sub))
        self._subs[sub_id] = sub
        return sub

    async def open(self) -> None:
        """Open the streams now (the first `async for` does it otherwise)."""
        if self._closed:
            raise ConfigError("this live stream is closed")
        if self._opening is None:
            self._opening = asyncio.create_task(self._open())
        await asyncio.shield(self._opening)

    async def _open(self) -> None:
        metadata = await self._client._call_metadata()
        for service, batch in self._batches():
            call = self._client._live_open(service)(
                live_pb2.LiveOpen(subscriptions=[p.subscription for p in batch], group_results=self._group),
                metadata=metadata,
            )
            self._calls.append(call)
            subs = [p.sub for p in batch]
            self._readers.append(asyncio.create_task(self._read(call, subs), name=f"myko-live-{service}"))

    def _batches(self) -> list[tuple[str, list[_Planned]]]:
        # Subscriptions to one request side by side, so they share a stream (and its frames).
        batches: list[tuple[str, list[_Planned]]] = []
        for service in ("query", "report"):
            mine = sorted((p for p in self._planned if p.service == service), key=lambda p: p.key)
            for start in range(0, len(mine), self._max_per_stream):
                batches.append((service, mine[start : start + self._max_per_stream]))
        return batches

    async def _read(
        self, call: grpc.aio.UnaryStreamCall[Any, live_pb2.LiveFrame], subs: list[LiveSubscription[Any]]
    ) -> None:
        ended: MykoError = Unavailable("the live stream ended")
        try:
            async for frame in call:
                body = frame.WhichOneof("body")
                if body == "query" or body == "report":
                    raw = getattr(frame, body)
                    for sub_id in (frame.sub_id, *frame.more_sub_ids):
                        if (sub := self._subs.get(sub_id)) is not None:
                            sub._put(raw)
                elif body == "error" and (sub := self._subs.get(frame.sub_id)) is not None:
                    code = _CODES.get(frame.error.code, grpc.StatusCode.UNKNOWN)
                    sub._fail(error_of(code, frame.error.message))
        except grpc.aio.AioRpcError as exc:
            ended = error_from_rpc(exc)
        except asyncio.CancelledError:
            ended = ConfigError("this live stream is closed")
            raise
        finally:
            for sub in subs:
                sub._fail(ended)

    async def aclose(self) -> None:
        self._closed = True
        if self._opening is not None:
            self._opening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._opening
        for call in self._calls:
            call.cancel()
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)

    async def __aenter__(self) -> Live:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
