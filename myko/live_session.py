"""A LiveBus stream's session: what it still has to send, newest value per subscription.

Shared by the gateway (a browser page's stream, myko/gateway/) and by
query_svc/report_svc (an internal caller's stream, myko/live_streams.py).

Emissions are full values, so a session keeps only the newest undelivered
result per subscription: a slow reader coalesces instead of queueing. Frames
are taken one at a time, so a reader that stops reading holds at most one frame
in its connection's buffer beyond references to the current results. The
unsent bytes (shared results counted per frame) are capped: a session over
`max_unsent_bytes` ends with RESOURCE_EXHAUSTED.

With `grouped` (LiveOpen.group_results), subscriptions handed the very same
result object (one evaluation, or one upstream feed, serves them all) wait in
ONE frame that names them all (sub_id + more_sub_ids): a change costs one
write per stream and evaluation, not one per subscription.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from prometheus_client import Counter

from myko.errors import MykoError, ResourceExhausted
from myko.live_frames import HEARTBEAT, Outgoing, Result, opened_frame, result_bytes, result_prefix, varint
from myko.live_kind import LiveKind

# Head bytes a frame holds besides its sub_ids (tags and lengths): for the byte cap only.
_HEAD_OVERHEAD = 16


class _Pending:
    """One frame waiting to go, under the keys in `sub_ids`: a result, or a fixed frame (an error).

    A result's head is `prefix` (given by deliver_frame) or made from the keys
    when it is sent (they are then the subscriptions it names)."""

    __slots__ = ("fixed", "kind", "prefix", "result", "size", "sub_ids")

    def __init__(
        self,
        kind: LiveKind | None,
        result: Result | None,
        fixed: Outgoing | None = None,
        prefix: bytes | None = None,
    ) -> None:
        self.kind = kind
        self.result = result
        self.fixed = fixed
        self.prefix = prefix
        self.sub_ids: dict[str, None] = {}
        if fixed is not None:
            self.size = fixed.size
        else:
            self.size = len(result_bytes(result or b"")) + _HEAD_OVERHEAD + len(prefix or b"")

    def outgoing(self) -> Outgoing:
        if self.fixed is not None:
            return self.fixed
        assert self.result is not None
        prefix = self.prefix
        if prefix is None:
            assert self.kind is not None
            prefix = result_prefix(list(self.sub_ids), self.kind)
        return Outgoing(prefix + varint(len(result_bytes(self.result))), self.result)


class Session:
    def __init__(
        self,
        session_id: str,
        *,
        heartbeat_s: float,
        max_unsent_bytes: int,
        on_fail: Callable[[Session], None],
        grouped: bool = False,
        coalesced: Counter | None = None,
    ) -> None:
        self.id = session_id
        self.grouped = grouped
        # Why the server ended this stream; None while it runs or when the reader left.
        self.ended: MykoError | None = None
        # Ends the session when its token expires; cancelled on close.
        self.expiry: asyncio.TimerHandle | None = None
        self._heartbeat_s = heartbeat_s
        self._max_unsent = max_unsent_bytes
        self._on_fail = on_fail
        # Frames in the order they are to be sent (oldest first), by a serial number.
        self._queue: dict[int, _Pending] = {}
        self._serial = 0
        self._of_sub: dict[str, tuple[int, _Pending]] = {}
        # grouped: the queued frame of each result object, to add subscriptions to it.
        self._by_result: dict[int, tuple[int, _Pending]] = {}
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

    def deliver_result(self, sub_id: str, kind: LiveKind, result: Result) -> None:
        """A new full value for `sub_id`; it replaces any older one not sent yet."""
        if self._closed:
            return
        if self._drop(sub_id) and self._coalesced is not None:
            self._coalesced.inc()
        data = result_bytes(result)
        if self.grouped:
            queued = self._by_result.get(id(data))
            if queued is not None and queued[1].result is result and queued[1].kind is kind:
                serial, pending = queued
                pending.sub_ids[sub_id] = None
                grown = len(sub_id) + 2
                pending.size += grown
                self._of_sub[sub_id] = queued
                self._grew(grown)
                return
        pending = _Pending(kind, result)
        pending.size += len(sub_id)
        serial = self._enqueue(sub_id, pending)
        if self.grouped:
            self._by_result[id(data)] = (serial, pending)
        self._grew(pending.size)

    def deliver_frame(self, key: str, prefix: bytes, result: Result) -> None:
        """A new full value for the subscriptions `prefix` names (live_frames.result_prefix),
        waiting under `key` (one of them, which gets no result frame of its own)."""
        if self._closed:
            return
        if self._drop(key) and self._coalesced is not None:
            self._coalesced.inc()
        pending = _Pending(None, result, prefix=prefix)
        self._enqueue(key, pending)
        self._grew(pending.size)

    def deliver(self, sub_id: str, out: Outgoing) -> None:
        """A fixed frame for `sub_id` (its LiveError); it replaces any result not sent yet."""
        if self._closed:
            return
        self._drop(sub_id)
        pending = _Pending(None, None, fixed=out)
        self._enqueue(sub_id, pending)
        self._grew(pending.size)

    def discard(self, sub_id: str) -> None:
        self._drop(sub_id)

    def _enqueue(self, sub_id: str, pending: _Pending) -> int:
        serial = self._serial = self._serial + 1
        pending.sub_ids[sub_id] = None
        self._queue[serial] = pending
        self._of_sub[sub_id] = (serial, pending)
        return serial

    def _drop(self, sub_id: str) -> bool:
        """Take `sub_id` out of the frame it waits in; whether it waited in one."""
        queued = self._of_sub.pop(sub_id, None)
        if queued is None:
            return False
        serial, pending = queued
        del pending.sub_ids[sub_id]
        if pending.sub_ids:
            shrunk = len(sub_id) + 2
            pending.size -= shrunk
            self._unsent -= shrunk
            return True
        self._unqueue(serial, pending)
        self._unsent -= pending.size
        return True

    def _unqueue(self, serial: int, pending: _Pending) -> None:
        del self._queue[serial]
        if pending.result is not None:
            key = id(result_bytes(pending.result))
            if self._by_result.get(key, (0, None))[1] is pending:
                del self._by_result[key]

    def _grew(self, n: int) -> None:
        self._unsent += n
        if self._unsent > self._max_unsent:
            self.fail(
                ResourceExhausted(
                    f"the stream has {self._unsent} bytes waiting to be sent, over the limit of "
                    f"{self._max_unsent}; subscribe to fewer or smaller results"
                )
            )
            return
        self._wake.set()

    def fail(self, error: MykoError) -> None:
        """End the stream with this status; its subscriptions are released at once."""
        if self._closed:
            return
        self.ended = error
        self.close()
        self._on_fail(self)

    def close(self) -> None:
        self._closed = True
        self._queue.clear()
        self._of_sub.clear()
        self._by_result.clear()
        self._wake.set()
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None

    async def frames(self) -> AsyncIterator[Outgoing]:
        yield opened_frame(self._heartbeat_s)
        while not self._closed:
            if not self._queue:
                self._wake.clear()
                try:
                    async with asyncio.timeout(self._heartbeat_s):
                        await self._wake.wait()
                except TimeoutError:
                    yield HEARTBEAT
                continue
            # The oldest waiting frame first; a newer value for a subscription queues at the end.
            serial = next(iter(self._queue))
            pending = self._queue[serial]
            self._unqueue(serial, pending)
            for sub_id in pending.sub_ids:
                del self._of_sub[sub_id]
            yield pending.outgoing()
            # Resumed: the frame was written.
            self._unsent -= pending.size
