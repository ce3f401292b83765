"""LiveBus core: open streams (sessions), their subscriptions, and shared upstream Watch streams.

A session is one Open stream of a browser page, with the fixed set of
subscriptions it was opened with. Each subscription is fed by a Feed: one upstream QueryBus/ReportBus Watch over HTTP/2, shared by every
subscription (of any session) with the same request and metadata. Emissions are
full values, so a session keeps only the newest undelivered frame per
subscription: a slow page coalesces instead of queueing, and its memory is
bounded by its number of subscriptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import grpc

from myko.gateway.metadata import Metadata
from myko.gateway.routes import Upstream
from myko.gateway.status import StatusError
from myko.gateway.upstreams import Upstreams
from myko.live_kind import LiveKind
from myko.v1 import live_pb2

log = logging.getLogger(__name__)


_UPSTREAM = {LiveKind.QUERY: Upstream.QUERY, LiveKind.REPORT: Upstream.REPORT}
# LiveFrame.query = 3, LiveFrame.report = 4.
_FRAME_FIELD = {LiveKind.QUERY: 3, LiveKind.REPORT: 4}


@dataclass(frozen=True, slots=True)
class FeedKey:
    kind: LiveKind
    request: bytes
    metadata: Metadata


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def result_frame(sub_id: str, kind: LiveKind, result: bytes) -> bytes:
    """A LiveFrame around upstream result bytes, without decoding them.

    An embedded message field is encoded exactly like a bytes field, so the raw
    QueryResult/ReportResult is appended as field 3 or 4 after the sub_id.
    """
    head = live_pb2.LiveFrame(sub_id=sub_id).SerializeToString()
    tag = _varint((_FRAME_FIELD[kind] << 3) | 2)
    return head + tag + _varint(len(result)) + result


def error_frame(sub_id: str, code: grpc.StatusCode, message: str) -> bytes:
    err = live_pb2.LiveError(code=int(code.value[0]), message=message)
    return live_pb2.LiveFrame(sub_id=sub_id, error=err).SerializeToString()


class Session:
    def __init__(self, session_id: str, *, heartbeat_s: float) -> None:
        self.id = session_id
        self._heartbeat_s = heartbeat_s
        self.subs: dict[str, Feed] = {}
        self._pending: dict[str, bytes] = {}
        self._wake = asyncio.Event()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def deliver(self, sub_id: str, frame: bytes) -> None:
        if self._closed:
            return
        # Newest value wins: an older undelivered emission is obsolete.
        self._pending.pop(sub_id, None)
        self._pending[sub_id] = frame
        self._wake.set()

    def discard(self, sub_id: str) -> None:
        self._pending.pop(sub_id, None)

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    async def frames(self) -> AsyncIterator[bytes]:
        opened = live_pb2.LiveOpened(heartbeat_interval_ms=int(self._heartbeat_s * 1000))
        yield live_pb2.LiveFrame(opened=opened).SerializeToString()
        heartbeat = live_pb2.LiveFrame(heartbeat=live_pb2.LiveHeartbeat()).SerializeToString()
        while not self._closed:
            try:
                await asyncio.wait_for(self._wake.wait(), self._heartbeat_s)
            except TimeoutError:
                yield heartbeat
                continue
            self._wake.clear()
            pending, self._pending = self._pending, {}
            for frame in pending.values():
                if self._closed:
                    return
                yield frame


class Feed:
    """One upstream Watch, fanned out to every subscription with the same key."""

    def __init__(self, key: FeedKey, hub: LiveHub, upstreams: Upstreams) -> None:
        self.key = key
        self.listeners: dict[tuple[str, str], Session] = {}
        self.last: bytes | None = None
        self._hub = hub
        self._upstreams = upstreams
        self._task = asyncio.create_task(self._run(), name=f"live-feed-{key.kind.value}")

    def add(self, session: Session, sub_id: str) -> None:
        self.listeners[(session.id, sub_id)] = session
        if self.last is not None:
            # Every emission is a full value, so the newest one is a valid first one.
            session.deliver(sub_id, result_frame(sub_id, self.key.kind, self.last))

    def remove(self, session: Session, sub_id: str) -> None:
        self.listeners.pop((session.id, sub_id), None)

    def cancel(self) -> None:
        self._task.cancel()

    async def wait_closed(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        watch = self._upstreams.server_stream(_UPSTREAM[self.key.kind], self.key.kind.watch_method)
        call = watch(self.key.request, metadata=self.key.metadata or None)
        code, message = grpc.StatusCode.UNAVAILABLE, "upstream stream ended"
        try:
            async for result in call:
                self.last = result
                for (_, sub_id), session in list(self.listeners.items()):
                    session.deliver(sub_id, result_frame(sub_id, self.key.kind, result))
        except grpc.aio.AioRpcError as exc:
            code, message = exc.code(), exc.details() or exc.code().name
        finally:
            call.cancel()
        log.info("live feed %s ended: %s %s", self.key.kind.value, code.name, message)
        self._hub.feed_ended(self, code, message)


class LiveHub:
    def __init__(self, upstreams: Upstreams, *, heartbeat_s: float, max_subs_per_session: int = 256) -> None:
        self._upstreams = upstreams
        self._heartbeat_s = heartbeat_s
        self.max_subs = max_subs_per_session
        self._sessions: dict[str, Session] = {}
        self._feeds: dict[FeedKey, Feed] = {}

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    @property
    def feed_count(self) -> int:
        return len(self._feeds)

    def open(self, subscriptions: Sequence[tuple[str, FeedKey]]) -> Session:
        """A session fed by these (sub_id, key) pairs; validate them before calling."""
        if len(subscriptions) > self.max_subs:
            raise StatusError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"a stream may carry at most {self.max_subs} subscriptions",
            )
        session = Session(secrets.token_urlsafe(12), heartbeat_s=self._heartbeat_s)
        self._sessions[session.id] = session
        for sub_id, key in subscriptions:
            feed = self._feeds.get(key)
            if feed is None:
                feed = self._feeds[key] = Feed(key, self, self._upstreams)
            session.subs[sub_id] = feed
            feed.add(session, sub_id)
        return session

    def close(self, session: Session) -> None:
        session.close()
        self._sessions.pop(session.id, None)
        for sub_id in list(session.subs):
            self._detach(session, sub_id)

    def feed_ended(self, feed: Feed, code: grpc.StatusCode, message: str) -> None:
        if self._feeds.get(feed.key) is feed:
            del self._feeds[feed.key]
        for (_, sub_id), session in list(feed.listeners.items()):
            if session.subs.get(sub_id) is feed:
                del session.subs[sub_id]
                session.deliver(sub_id, error_frame(sub_id, code, message))
        feed.listeners.clear()

    async def aclose(self) -> None:
        for session in list(self._sessions.values()):
            self.close(session)
        feeds = list(self._feeds.values())
        self._feeds.clear()
        for feed in feeds:
            feed.cancel()
        for feed in feeds:
            await feed.wait_closed()

    def _detach(self, session: Session, sub_id: str) -> None:
        feed = session.subs.pop(sub_id)
        session.discard(sub_id)
        feed.remove(session, sub_id)
        if not feed.listeners and self._feeds.get(feed.key) is feed:
            # Nobody watches any more: stop the upstream stream.
            del self._feeds[feed.key]
            feed.cancel()
