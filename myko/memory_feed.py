"""The in-memory Feed: reads a MemoryLog the way TopicReader reads Kafka.

Every partition from its first offset (or a topic's ReadWindow start), in order,
batch by batch to `on_batch` with the watermark after the batch, on a task of
its own: a write becomes visible to the Store a little later than it is
committed, as with Kafka, so read-back waits behave the same. For tests it can
be held, like a reader that lags behind the log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence

from myko.errors import DeadlineExceeded
from myko.lifecycle import Lifecycle, cancel_and_wait
from myko.memory_log import LogRecord, MemoryLog
from myko.ports import ReadWindow
from myko.watermark import TopicPartition, Watermark

OnBatch = Callable[[Sequence[LogRecord], Watermark], None]


class MemoryFeed(Lifecycle):
    def __init__(
        self,
        log: MemoryLog,
        topics: Sequence[str],
        on_batch: OnBatch,
        *,
        windows: Mapping[str, ReadWindow] | None = None,
        max_batch_records: int = 5000,
    ) -> None:
        self._log = log
        self._topics = list(topics)
        self._on_batch = on_batch
        self._windows = dict(windows or {})
        self._max_batch = max_batch_records
        self._watermark = Watermark()
        self._targets: dict[TopicPartition, int] = {}
        self._caught_up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._open = asyncio.Event()
        self._open.set()

    @property
    def watermark(self) -> Watermark:
        return self._watermark

    async def start(self) -> None:
        tps = self._log.tps(self._topics)
        self._watermark = Watermark({tp: self._start_of(tp) for tp in tps})
        self._targets = {tp: self._log.end_offset(tp) for tp in tps}
        self._on_batch([], self._watermark)
        self._check_caught_up()
        self._task = asyncio.create_task(self._run(), name="memory-feed")

    def _start_of(self, tp: TopicPartition) -> int:
        window = self._windows.get(tp[0])
        first = self._log.first_offset(tp)
        if window is None:
            return first
        end = self._log.end_offset(tp)
        young = self._log.offset_for_time(tp, self._log.clock_ms() - window.max_age_ms)
        return max(first, young, end - window.max_offsets)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    def hold(self) -> None:
        """Deliver nothing more until release() (a reader lagging behind)."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def wait_caught_up(self, *, timeout_s: float | None = None) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await self._caught_up.wait()
        except TimeoutError:
            raise DeadlineExceeded(f"feed did not catch up within {timeout_s}s") from None

    async def end_offsets(self) -> dict[TopicPartition, int]:
        return {tp: self._log.end_offset(tp) for tp in self._watermark.positions}

    async def _run(self) -> None:
        while True:
            await self._open.wait()
            positions = dict(self._watermark.positions)
            records: list[LogRecord] = []
            updates: dict[TopicPartition, int] = {}
            for tp, pos in positions.items():
                got = self._log.read(tp, pos, max_records=self._max_batch - len(records))
                records.extend(got)
                # A truncated partition resumes at its first offset.
                after = got[-1].offset + 1 if got else max(pos, self._log.first_offset(tp))
                if after > pos:
                    updates[tp] = after
            if not updates:
                await self._log.wait_beyond(positions)
                continue
            self._watermark = self._watermark.advanced(updates)
            self._on_batch(records, self._watermark)
            self._check_caught_up()
            await asyncio.sleep(0)

    def _check_caught_up(self) -> None:
        if not self._caught_up.is_set() and self._watermark.covers(self._targets):
            self._caught_up.set()
