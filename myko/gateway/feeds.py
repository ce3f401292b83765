"""Feeds: one upstream Watch each, shared by every LiveBus subscription with the same key.

A result arrives once from upstream and is held once (`SharedResult`); every
subscription's frame is a small head (its sub_id(s), the field tag and length:
myko/live_frames.py) followed by those same shared bytes, never a copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import grpc
from prometheus_client import Counter

from myko import live_frames
from myko.gateway.admission import ByteGauge
from myko.gateway.metadata import Metadata
from myko.gateway.routes import Upstream
from myko.gateway.status_text import clip, upstream_details
from myko.gateway.upstreams import Upstreams
from myko.live_frames import Outgoing, Result
from myko.live_kind import LiveKind

log = logging.getLogger(__name__)

_UPSTREAM = {LiveKind.QUERY: Upstream.QUERY, LiveKind.REPORT: Upstream.REPORT}


@dataclass(frozen=True, slots=True)
class FeedKey:
    """What makes two subscriptions the same feed.

    `request` is canonical (canonical.py), `scope` the sorted scope headers
    (metadata.MetadataPolicy): headers that may change a result. An identity
    would become part of the scope, so feeds are shared only within it.
    """

    kind: LiveKind
    request: bytes
    scope: Metadata


class SharedResult:
    """One upstream emission, counted in the gateway's byte gauge while anything holds it."""

    __slots__ = ("_gauge", "data")

    def __init__(self, data: bytes, gauge: ByteGauge) -> None:
        self.data = data
        self._gauge = gauge
        gauge.add(len(data))

    def __del__(self) -> None:
        self._gauge.sub(len(self.data))


def error_frame(sub_id: str, code: grpc.StatusCode, message: str) -> Outgoing:
    return live_frames.error_frame(sub_id, code, clip(message))


class Listener(Protocol):
    """What a feed delivers to (sessions.Session)."""

    def deliver_result(self, sub_id: str, kind: LiveKind, result: Result) -> None: ...


class Feed:
    """One upstream Watch, fanned out to every subscription with the same key."""

    def __init__(
        self,
        key: FeedKey,
        upstreams: Upstreams,
        gauge: ByteGauge,
        on_end: Callable[[Feed, grpc.StatusCode, str], None],
        results: Counter | None = None,
    ) -> None:
        self.key = key
        # (session id, sub_id) -> listener
        self.listeners: dict[tuple[str, str], Listener] = {}
        self.last: SharedResult | None = None
        self._upstreams = upstreams
        self._gauge = gauge
        self._on_end = on_end
        self._results = results
        self._task = asyncio.create_task(self._run(), name=f"live-feed-{key.kind.value}")

    def add(self, session_id: str, sub_id: str, listener: Listener) -> None:
        self.listeners[(session_id, sub_id)] = listener
        if self.last is not None:
            # Every emission is a full value, so the newest one is a valid first one.
            listener.deliver_result(sub_id, self.key.kind, self.last)

    def remove(self, session_id: str, sub_id: str) -> None:
        self.listeners.pop((session_id, sub_id), None)

    def cancel(self) -> None:
        # Released now, not when the cancelled task's frames are collected.
        self.last = None
        self._task.cancel()

    async def wait_closed(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        upstream = _UPSTREAM[self.key.kind]
        watch = self._upstreams.server_stream(upstream, self.key.kind.watch_method)
        call = watch(self.key.request, metadata=self.key.scope or None)
        code, message = grpc.StatusCode.UNAVAILABLE, "upstream stream ended"
        try:
            async for data in call:
                self._emit(data)
        except grpc.aio.AioRpcError as exc:
            code, message = exc.code(), upstream_details(upstream.value, exc)
        finally:
            call.cancel()
            self.last = None
        log.info("live feed %s ended: %s %s", self.key.kind.value, code.name, message)
        self._on_end(self, code, message)

    def _emit(self, data: bytes) -> None:
        # A method of its own so that no frame of the long-running _run holds a result.
        result = self.last = SharedResult(data, self._gauge)
        if self._results is not None:
            self._results.inc()
        kind = self.key.kind
        for (_, sub_id), listener in list(self.listeners.items()):
            listener.deliver_result(sub_id, kind, result)
