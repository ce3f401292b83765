"""HeapTrimmer: when query_svc hands freed heap pages back (myko/heap_trim.py)."""

from __future__ import annotations

import asyncio
import platform
import threading

import pytest
from polling import eventually

from myko.heap_trim import HeapTrimmer, glibc_trim

MB = 1024 * 1024


class CountingTrim:
    def __init__(self) -> None:
        self.calls = 0
        self.threads: set[int] = set()

    def __call__(self) -> None:
        self.calls += 1
        self.threads.add(threading.get_ident())


async def test_a_large_result_trims_once_after_the_delay() -> None:
    trim = CountingTrim()
    async with HeapTrimmer(threshold_bytes=4 * MB, delay_s=0.05, min_interval_s=0.0, trim=trim) as heap:
        heap.note(5 * MB)
        heap.note(6 * MB)  # within the delay: the same trim
        assert trim.calls == 0  # not on the caller's stack: the result is still alive there
        await eventually(lambda: heap.trims == 1, timeout_s=10.0)
        await asyncio.sleep(0.2)
        assert trim.calls == 1
    # In a worker thread, not on the event loop's.
    assert threading.get_ident() not in trim.threads


async def test_small_results_never_trim() -> None:
    trim = CountingTrim()
    async with HeapTrimmer(threshold_bytes=4 * MB, delay_s=0.0, min_interval_s=0.0, trim=trim) as heap:
        for _ in range(100):
            heap.note(4 * MB - 1)
        await asyncio.sleep(0.1)
    assert trim.calls == 0


async def test_trims_are_at_least_min_interval_apart() -> None:
    trim = CountingTrim()
    async with HeapTrimmer(threshold_bytes=1, delay_s=0.0, min_interval_s=0.4, trim=trim) as heap:
        heap.note(10)
        await eventually(lambda: heap.trims == 1, timeout_s=10.0)
        heap.note(10)  # too soon: waits for the interval
        await asyncio.sleep(0.1)
        assert trim.calls == 1
        await eventually(lambda: heap.trims == 2, timeout_s=10.0)


async def test_off_and_stopped_trimmers_do_nothing() -> None:
    trim = CountingTrim()
    async with HeapTrimmer(threshold_bytes=0, delay_s=0.0, trim=trim) as off:
        off.note(100 * MB)
        off.request()
        await asyncio.sleep(0.05)
    pending = HeapTrimmer(threshold_bytes=1, delay_s=0.2, trim=trim)
    await pending.start()
    pending.note(10)
    await pending.stop()  # cancels the trim it had scheduled
    pending.note(10)  # after stop: ignored
    await asyncio.sleep(0.3)
    assert trim.calls == 0


async def test_a_failing_trim_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> None:
        raise OSError("no")

    async with HeapTrimmer(threshold_bytes=1, delay_s=0.0, trim=broken) as heap:
        heap.note(10)
        await eventually(lambda: "malloc_trim failed" in caplog.text, timeout_s=10.0)
        assert heap.trims == 0


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        HeapTrimmer(threshold_bytes=-1)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_glibc_trim_is_found_and_callable() -> None:
    trim = glibc_trim()
    assert trim is not None
    assert trim() in (0, 1)
