"""A LiveBus session: one Open stream of a browser page and what it still has to send.

Emissions are full values, so a session keeps only the newest undelivered frame
per subscription: a slow page coalesces instead of queueing. Frames are taken
one at a time, so a page that stops reading holds at most one frame in its
connection's buffer beyond references to the feeds' current results. The
unsent bytes (shared results counted per session) are capped: a session over
`max_unsent_bytes` ends with RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from prometheus_client import Counter

from myko.errors import MykoError, ResourceExhausted
from myko.gateway.admission import Ticket
from myko.gateway.feeds import Feed, Outgoing
from myko.v1 import live_pb2

_HEARTBEAT = Outgoing(live_pb2.LiveFrame(heartbeat=live_pb2.LiveHeartbeat()).SerializeToString())


class Session:
    def __init__(
        self,
        session_id: str,
        ticket: Ticket,
        *,
        heartbeat_s: float,
        max_unsent_bytes: int,
        on_fail: Callable[[Session], None],
        coalesced: Counter | None = None,
    ) -> None:
        self.id = session_id
        self.ticket = ticket
        self.subs: dict[str, Feed] = {}
        # Why the gateway ended this stream; None while it runs or when the page left.
        self.ended: MykoError | None = None
        # Ends the session when its token expires (FeedHub.open); cancelled on close.
        self.expiry: asyncio.TimerHandle | None = None
        self._heartbeat_s = heartbeat_s
        self._max_unsent = max_unsent_bytes
        self._on_fail = on_fail
        self._pending: dict[str, Outgoing] = {}
        self._unsent = 0
        self._wake = asyncio.Event()
        self._closed = False
        self._coalesced = coalesced

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def unsent_bytes(self) -> int:
        return self._unsent

    def deliver(self, sub_id: str, out: Outgoing) -> None:
        if self._closed:
            return
        # Newest value wins: an older undelivered emission is obsolete.
        old = self._pending.pop(sub_id, None)
        if old is not None:
            self._unsent -= old.size
            if self._coalesced is not None:
                self._coalesced.inc()
        self._pending[sub_id] = out
        self._unsent += out.size
        if self._unsent > self._max_unsent:
            self.fail(
                ResourceExhausted(
                    f"the stream has {self._unsent} bytes waiting to be sent, over the limit of "
                    f"{self._max_unsent}; subscribe to fewer or smaller results"
                )
            )
            return
        self._wake.set()

    def discard(self, sub_id: str) -> None:
        old = self._pending.pop(sub_id, None)
        if old is not None:
            self._unsent -= old.size

    def fail(self, error: MykoError) -> None:
        """End the stream with this status; its subscriptions are released at once."""
        if self._closed:
            return
        self.ended = error
        self.close()
        self._on_fail(self)

    def close(self) -> None:
        self._closed = True
        self._pending.clear()
        self._wake.set()
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None

    async def frames(self) -> AsyncIterator[Outgoing]:
        opened = live_pb2.LiveOpened(heartbeat_interval_ms=int(self._heartbeat_s * 1000))
        yield Outgoing(live_pb2.LiveFrame(opened=opened).SerializeToString())
        while not self._closed:
            if not self._pending:
                self._wake.clear()
                try:
                    async with asyncio.timeout(self._heartbeat_s):
                        await self._wake.wait()
                except TimeoutError:
                    yield _HEARTBEAT
                continue
            # The oldest pending subscription first; deliver() moves an updated one to the end.
            sub_id = next(iter(self._pending))
            out = self._pending.pop(sub_id)
            yield out
            # Resumed: the frame was written.
            self._unsent -= out.size
