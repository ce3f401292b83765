"""Handing memory freed by large results back to the operating system.

A new evaluation over a large store (the first Get or Watch of AllTargets over
100k Targets) builds a result of tens of MB and a decoded message per entity.
Once they are freed, glibc keeps most of those pages: its own trimming only
returns the top of the heap, and the holes left between long-lived blocks stay
resident. Measured in process (`python -m bench.store_memory --evaluate`), two
such evaluations leave a mirror at ~1.1 KB of RSS per stored Target where its
state is ~0.6 KB; `malloc_trim(0)`, which gives back every whole free page
anywhere in the heap, brings it back to ~0.6 KB.

`malloc_trim` walks the heap holding the allocator's lock (tens of ms at these
sizes), so a trim runs in a worker thread (ctypes releases the GIL), only after
something large was built, a moment after it (so the result has been sent and
freed), and at most once per `min_interval_s`. Where the C library has no
`malloc_trim` (musl, macOS) the trimmer does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD_BYTES = 4 * 1024 * 1024
DEFAULT_DELAY_S = 0.5
DEFAULT_MIN_INTERVAL_S = 2.0


def glibc_trim() -> Callable[[], object] | None:
    """glibc's `malloc_trim(0)`, or None where the C library has none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    return lambda: trim(0)


class HeapTrimmer:
    """Trims the C heap after large results: `note(size)` of each one built.

    `threshold_bytes=0` turns it off. Use `async with` or `start()`/`stop()`;
    notes outside a running trimmer are ignored.
    """

    def __init__(
        self,
        *,
        threshold_bytes: int = DEFAULT_THRESHOLD_BYTES,
        delay_s: float = DEFAULT_DELAY_S,
        min_interval_s: float = DEFAULT_MIN_INTERVAL_S,
        trim: Callable[[], object] | None = None,
    ) -> None:
        if threshold_bytes < 0 or delay_s < 0 or min_interval_s < 0:
            raise ValueError("threshold_bytes, delay_s and min_interval_s must be >= 0")
        self._threshold_bytes = threshold_bytes
        self._delay_s = delay_s
        self._min_interval_s = min_interval_s
        self._trim = trim if trim is not None else glibc_trim()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: asyncio.TimerHandle | None = None
        self._running: asyncio.Task[None] | None = None
        self._last_start = -float("inf")
        self.trims = 0

    @property
    def enabled(self) -> bool:
        return self._threshold_bytes > 0 and self._trim is not None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    async def stop(self) -> None:
        self._loop = None
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self._running is not None:
            await asyncio.gather(self._running, return_exceptions=True)
            self._running = None

    async def __aenter__(self) -> HeapTrimmer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def note(self, size_bytes: int) -> None:
        """A result of `size_bytes` was built: trim a moment after it, if it was large."""
        if size_bytes >= self._threshold_bytes > 0:
            self.request()

    def request(self) -> None:
        """Trim soon (after `delay_s`, no sooner than `min_interval_s` after the last)."""
        loop = self._loop
        if loop is None or not self.enabled or self._pending is not None:
            return
        now = time.monotonic()
        when = max(now + self._delay_s, self._last_start + self._min_interval_s)
        self._pending = loop.call_later(when - now, self._fire)

    def _fire(self) -> None:
        self._pending = None
        if self._running is not None and not self._running.done():
            self.request()  # one at a time; the next waits its interval
            return
        self._last_start = time.monotonic()
        self._running = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        trim = self._trim
        assert trim is not None
        t0 = time.perf_counter()
        try:
            await asyncio.to_thread(trim)
        except Exception:  # never fatal: the memory simply stays with the process
            log.exception("malloc_trim failed")
            return
        self.trims += 1
        log.debug("heap trimmed in %.1f ms", (time.perf_counter() - t0) * 1000)
