"""Closes connections in stages, so a client still sending a body reads its answer.

aiohttp answers a request it cannot parse (a control character in a header,
say) with 400 and closes the socket at once. If the client is still sending a
body, the kernel holds unread bytes at that close and sends a reset, which
discards the 400 the client had not read yet: the client sees only "connection
reset". RFC 9112 section 9.6 asks servers to close in stages instead: stop
processing, keep reading and discarding what arrives, and close once the
client has finished, gone quiet, or used up a bound. This protocol wrapper does
that for every close the HTTP handler asks for. Requests aiohttp parsed are
drained by its own lingering (web_protocol's lingering_time); this covers the
rest. Bounded: at most `max_bytes` more, `max_s` in all, `quiet_s` without data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class LingerLimits:
    max_s: float = 10.0
    quiet_s: float = 1.0
    max_bytes: int = 16 * 1024 * 1024


class StagedClose:
    """One connection's close: asked for by the handler, done when the client is through."""

    def __init__(self, transport: asyncio.Transport, limits: LingerLimits) -> None:
        self._transport = transport
        self._close_now = transport.close
        self._limits = limits
        self.asked = False
        self._drained = 0
        self._deadline: asyncio.TimerHandle | None = None
        self._quiet: asyncio.TimerHandle | None = None
        # The handler holds the transport itself (aiohttp's writer and sendfile need the real
        # one), so its `close` is what is replaced, on this one object only.
        setattr(transport, "close", self.ask)  # noqa: B010

    def ask(self) -> None:
        if self.asked:
            return
        self.asked = True
        if self._transport.is_closing():
            return
        if not self._transport.is_reading():
            self._transport.resume_reading()
        loop = asyncio.get_running_loop()
        # What the handler wrote still goes out: only reading continues, into nothing.
        self._deadline = loop.call_later(self._limits.max_s, self.finish)
        self._quiet = loop.call_later(self._limits.quiet_s, self.finish)

    def discard(self, n: int) -> None:
        """Bytes that arrived after the close was asked for: dropped; the quiet timer restarts."""
        self._drained += n
        if self._drained > self._limits.max_bytes:
            self.finish()
        elif self._quiet is not None:
            self._quiet.cancel()
            self._quiet = asyncio.get_running_loop().call_later(self._limits.quiet_s, self.finish)

    def finish(self) -> None:
        self.cancel_timers()
        self._close_now()

    def cancel_timers(self) -> None:
        for timer in (self._deadline, self._quiet):
            if timer is not None:
                timer.cancel()
        self._deadline = self._quiet = None


class LingeringProtocol(asyncio.Protocol):
    """Sits between the socket and aiohttp's handler; after a close is asked for, reads into nothing."""

    def __init__(self, handler: asyncio.Protocol, owner: LingeringConnections) -> None:
        self._handler = handler
        self._owner = owner
        self._close: StagedClose | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._close = StagedClose(transport, self._owner.limits)
        self._owner.open.add(self._close)
        self._handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._close is not None and self._close.asked:
            self._close.discard(len(data))
            return
        self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        if self._close is not None and self._close.asked:
            self._close.finish()  # the client has sent everything: done
            return None
        return self._handler.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._close is not None:
            self._close.cancel_timers()
            self._owner.open.discard(self._close)
        self._handler.connection_lost(exc)

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()


class LingeringConnections:
    """Wraps aiohttp's protocol factory (`runner.server`); `finish_all` ends every linger at shutdown."""

    def __init__(self, limits: LingerLimits | None = None) -> None:
        self.limits = limits or LingerLimits()
        self.open: set[StagedClose] = set()

    def factory(self, handlers: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: LingeringProtocol(handlers(), self)

    def finish_all(self) -> None:
        for close in list(self.open):
            if close.asked:
                close.finish()
