"""Follows topics from the beginning (or a window's start, or a checkpoint's watermark), read_committed,
without a consumer group.

The reader knows when it has caught up (reached the end offsets seen at start)
and lets callers wait until it has read past given positions: the basis of
read-your-writes across the pipeline.

It also notices when the history it has read stops being the topic's history
(a topic deleted and recreated, truncated, or repartitioned under it): it then
stops reading and reports `TopicRewritten`, rather than taking the new topic's
low offsets for replays (docs/quarantine.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError, OffsetOutOfRangeError

from myko.collector_hold import CollectorHold
from myko.errors import DeadlineExceeded, TopicRewritten, Unavailable
from myko.lifecycle import Lifecycle, cancel_and_wait
from myko.metrics.consumer import ConsumerLag
from myko.ports import ReadWindow
from myko.settings import KafkaSettings
from myko.topic_identity import TopicIdentity, describe_topics
from myko.watermark import Watermark

log = logging.getLogger(__name__)

Batch = Sequence[ConsumerRecord[bytes, bytes]]
OnBatch = Callable[[Batch, Watermark], None]
OnRewritten = Callable[[TopicRewritten], Coroutine[Any, Any, None]]
Pace = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class TopicsAtStart:
    """What a starting reader found, for `resume` to judge a checkpoint by (myko/checkpoints.py)."""

    # topic -> its identity now (None: missing); a topic the broker did not answer for is absent.
    identities: Mapping[str, TopicIdentity | None]
    log_starts: Mapping[tuple[str, int], int]
    # read_committed: the last stable offsets.
    ends: Mapping[tuple[str, int], int]


# Where to start reading the topics it covers instead of the beginning (having loaded the
# state up to there), or None.
Resume = Callable[[TopicsAtStart], Awaitable[Mapping[tuple[str, int], int] | None]]


class TopicReader(Lifecycle):
    """Reads every partition of `topics` and hands each fetched batch to `on_batch`.

    `on_batch` runs on the event loop with the batch and the watermark after it;
    it must not block. Positions only move forward. `pace`, when given, is
    awaited after each batch before the next fetch (the quarantine writer holds
    the reader back with it). `on_rewritten` is called once if a topic's history
    is rewritten under the reader; the reader has stopped by then. `lag`
    receives each partition's position and end after every fetch (metrics).
    `resume`, when given, is asked once at start, with the topics as they are,
    whether to start from a checkpoint's watermark rather than the beginning;
    it names the position of every partition of the topics it covers.
    """

    # How much each fetch may bring (aiokafka's defaults are 1 MiB per partition):
    # catching up over a large topic is then a few large responses, not many small ones.
    PARTITION_FETCH_BYTES = 16 * 1024 * 1024
    FETCH_MAX_BYTES = 64 * 1024 * 1024
    # Records handed to on_batch at once at most: a batch is applied without yielding.
    MAX_BATCH_RECORDS = 5000

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: Sequence[str],
        on_batch: OnBatch,
        *,
        client_id: str = "myko-reader",
        max_batch_records: int = MAX_BATCH_RECORDS,
        pace: Pace | None = None,
        on_rewritten: OnRewritten | None = None,
        expiring_topics: Collection[str] = (),
        windows: Mapping[str, ReadWindow] | None = None,
        max_record_bytes: int = 4 * 1024 * 1024,
        lag: ConsumerLag | None = None,
        resume: Resume | None = None,
    ) -> None:
        self._resume = resume
        self._kafka = kafka
        self._topics = list(topics)
        self._windows = dict(windows or {})
        self._max_record_bytes = max_record_bytes
        self._on_batch = on_batch
        self._client_id = client_id
        self._max_batch = max_batch_records
        self._pace = pace
        self._on_rewritten = on_rewritten
        # Topics whose oldest records expire by retention (the tx log): records
        # expiring before this reader got to them are skipped, not a rewrite.
        self._expiring = frozenset(expiring_topics)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._check_task: asyncio.Task[None] | None = None
        self._report_task: asyncio.Task[None] | None = None
        self._watermark = Watermark()
        self._targets: dict[TopicPartition, int] = {}
        self._caught_up = asyncio.Event()
        self._identities: dict[str, TopicIdentity] = {}
        # What a check found that later checks must confirm, and since when (see _check_topics).
        self._suspects: dict[str, float] = {}
        self._rewritten: TopicRewritten | None = None
        self._stopped = asyncio.Event()
        self._lag = lag
        # While catching up the cyclic collector is held off (myko/collector_hold.py).
        self._collector = CollectorHold()

    @property
    def watermark(self) -> Watermark:
        return self._watermark

    @property
    def caught_up(self) -> bool:
        return self._caught_up.is_set()

    @property
    def rewritten(self) -> TopicRewritten | None:
        """Why this reader stopped: a topic's history changed under it (None while fine)."""
        return self._rewritten

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            **consumer_args(self._kafka, client_id=self._client_id, max_record_bytes=self._max_record_bytes)
        )
        try:
            await consumer.start()
            tps: list[TopicPartition] = []
            for topic in self._topics:
                parts = await self._partitions(consumer, topic)
                tps += [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            # read_committed: end offsets are the last stable offsets.
            ends = await consumer.end_offsets(tps)
            starts = await self._window_starts(consumer, tps, ends)
            for tp, offset in starts.items():
                consumer.seek(tp, offset)
        except (KafkaError, OSError) as exc:
            await consumer.stop()
            raise Unavailable(f"cannot read {self._topics}: {exc}") from exc
        self._consumer = consumer
        await self._learn_identities()
        if self._resume is not None:
            starts.update(await self._resumed_at(consumer, tps, ends))
        self._watermark = Watermark({(tp.topic, tp.partition): starts.get(tp, 0) for tp in tps})
        self._targets = {tp: int(end) for tp, end in ends.items()}
        if self._lag is not None:
            self._lag.start({(tp.topic, tp.partition): end for tp, end in self._targets.items()})
        # Tell the consumer where it starts, so even an empty store reports
        # every partition in its watermark.
        self._on_batch([], self._watermark)
        self._check_caught_up()
        self._hold_from_collector()
        self._task = asyncio.create_task(self._run(), name=f"{self._client_id}-loop")
        self._check_task = asyncio.create_task(self._check_loop(), name=f"{self._client_id}-topic-check")

    async def _resumed_at(
        self, consumer: AIOKafkaConsumer, tps: list[TopicPartition], ends: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """Where `resume` says to start (seeking there), or {} to read from the beginning."""
        assert self._resume is not None
        try:
            firsts = await consumer.beginning_offsets(tps)
        except (KafkaError, OSError) as exc:
            log.warning("cannot list log start offsets, reading from the beginning: %s", exc)
            return {}
        found = TopicsAtStart(
            identities=dict(self._identities),
            log_starts={(tp.topic, tp.partition): int(o) for tp, o in firsts.items()},
            ends={(tp.topic, tp.partition): int(o) for tp, o in ends.items()},
        )
        positions = await self._resume(found)
        if positions is None:
            return {}
        out = {tp: positions[(tp.topic, tp.partition)] for tp in tps if (tp.topic, tp.partition) in positions}
        for tp, offset in out.items():
            consumer.seek(tp, offset)
        return out

    @property
    def identities(self) -> Mapping[str, TopicIdentity]:
        """Each topic's identity as first learned (what the rewrite checks compare with)."""
        return self._identities

    async def log_starts(self) -> dict[tuple[str, int], int]:
        """The current log start offsets of every partition read."""
        if self._rewritten is not None:
            raise self._rewritten
        assert self._consumer is not None
        starts = await self._consumer.beginning_offsets(list(self._consumer.assignment()))
        return {(tp.topic, tp.partition): int(o) for tp, o in starts.items()}

    @staticmethod
    async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
        for _ in range(50):
            parts = consumer.partitions_for_topic(topic)
            if parts:
                return set(parts)
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        raise Unavailable(f"topic {topic!r} has no partitions (does it exist?)")

    async def _window_starts(
        self, consumer: AIOKafkaConsumer, tps: list[TopicPartition], ends: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """Where a windowed topic's partitions start: the later of its age and offset bounds."""
        windowed = [tp for tp in tps if tp.topic in self._windows]
        if not windowed:
            return {}
        now_ms = time.time_ns() // 1_000_000
        firsts = await consumer.beginning_offsets(windowed)
        by_time = await consumer.offsets_for_times(
            {tp: max(0, now_ms - self._windows[tp.topic].max_age_ms) for tp in windowed}
        )
        starts = {}
        for tp in windowed:
            end = int(ends[tp])
            found = by_time.get(tp)
            young = end if found is None else int(found.offset)  # None: nothing that young
            recent = end - self._windows[tp.topic].max_offsets
            starts[tp] = max(int(firsts[tp]), young, recent)
        return starts

    async def end_offsets(self) -> dict[tuple[str, int], int]:
        """The current last stable offsets of every partition read."""
        if self._rewritten is not None:
            raise self._rewritten
        assert self._consumer is not None
        ends = await self._consumer.end_offsets(list(self._consumer.assignment()))
        return {(tp.topic, tp.partition): int(end) for tp, end in ends.items()}

    async def wait_caught_up(self, *, timeout_s: float | None = None) -> None:
        caught_up = asyncio.ensure_future(self._caught_up.wait())
        stopped = asyncio.ensure_future(self._stopped.wait())
        try:
            done, _ = await asyncio.wait(
                {caught_up, stopped}, timeout=timeout_s, return_when="FIRST_COMPLETED"
            )
        finally:
            caught_up.cancel()
            stopped.cancel()
        if self._rewritten is not None:
            raise self._rewritten
        if not done:
            raise DeadlineExceeded(f"reader did not catch up within {timeout_s}s")

    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while True:
            try:
                fetched = await consumer.getmany(timeout_ms=500, max_records=self._max_batch)
            except asyncio.CancelledError:
                raise
            except OffsetOutOfRangeError as exc:
                if not await self._out_of_range(exc.args[0]):
                    return
                continue
            except KafkaError as exc:
                log.warning("fetch failed, retrying: %s", exc)
                await asyncio.sleep(0.5)
                continue
            updates: dict[tuple[str, int], int] = {}
            records: list[ConsumerRecord[bytes, bytes]] = []
            lag = self._lag
            for tp, recs in fetched.items():
                records.extend(recs)
                if lag is not None:
                    lag.read(tp.topic, tp.partition, len(recs))
            # Control records (transaction markers) advance positions without
            # producing records, so positions come from the consumer itself.
            for tp in consumer.assignment():
                pos = await consumer.position(tp)
                if pos > self._watermark.get((tp.topic, tp.partition)):
                    updates[(tp.topic, tp.partition)] = pos
                if lag is not None:
                    # The end as the last fetch response told it: no extra request.
                    lag.update(tp.topic, tp.partition, pos, consumer.last_stable_offset(tp))
            if not records and not updates:
                continue
            self._watermark = self._watermark.advanced(updates)
            try:
                self._on_batch(records, self._watermark)
            except Exception:
                log.exception("batch handler failed; batch of %d records skipped", len(records))
            catching_up = not self._caught_up.is_set()
            self._check_caught_up()
            if catching_up:
                self._hold_from_collector()
            if self._pace is not None:
                await self._pace()

    async def _out_of_range(self, positions: dict[TopicPartition, int]) -> bool:
        """Skip records that expired before they were read; False once that is not the reason."""
        assert self._consumer is not None
        try:
            starts = await self._consumer.beginning_offsets(list(positions))
        except (KafkaError, OSError) as exc:
            log.warning("cannot look up log start offsets, retrying: %s", exc)
            await asyncio.sleep(0.5)
            return True
        for tp, pos in positions.items():
            if tp.topic in self._expiring and pos < starts[tp]:
                log.info(
                    "%s/%d: records %d..%d expired before they were read",
                    tp.topic,
                    tp.partition,
                    pos,
                    starts[tp] - 1,
                )
                self._consumer.seek(tp, starts[tp])
                continue
            self._rewrite(
                f"position {tp.topic}/{tp.partition}@{pos} is out of range: the topic was truncated or recreated"
            )
            return False
        return True

    async def _check_loop(self) -> None:
        interval_s = self._kafka.topic_check_interval_ms / 1000
        while self._rewritten is None:
            await asyncio.sleep(interval_s)
            try:
                found = await self._check_topics()
            except (KafkaError, OSError) as exc:
                log.debug("topic check failed, trying again later: %s", exc)
                continue
            if found is not None:
                self._rewrite(found)
            elif len(self._identities) < len(self._topics):
                await self._learn_identities()

    async def _learn_identities(self) -> None:
        """Note each topic's id and partition count, the first time the broker tells them."""
        assert self._consumer is not None
        try:
            found = await describe_topics(self._consumer._client, self._topics)
        except (KafkaError, OSError) as exc:
            # A broker down at start: the next check learns them instead.
            log.debug("cannot describe %s yet: %s", self._topics, exc)
            return
        for topic, identity in found.items():
            if identity is not None and topic not in self._identities:
                self._identities[topic] = identity
                if identity.topic_id is None and len(self._identities) == 1:
                    log.warning(
                        "the broker reports no topic ids: a recreated topic is noticed by its offsets only"
                    )

    async def _check_topics(self) -> str | None:
        """Why the topics are no longer the history read so far, or None.

        A changed topic id or partition count is proof; a missing topic or an
        offset below the position could be a broker still starting up, so they
        count only when the next check finds them again.
        """
        assert self._consumer is not None
        consumer = self._consumer
        suspects: dict[str, str] = {}
        now = await describe_topics(consumer._client, self._topics)
        tps = list(consumer.assignment())
        for topic in self._topics:
            if topic not in now:
                continue  # no answer for it this time
            after = now[topic]
            before = self._identities.get(topic)
            read = sum(1 for tp in tps if tp.topic == topic)
            if after is None:
                suspects[f"{topic}/deleted"] = f"topic {topic} was deleted"
            elif before and before.topic_id and after.topic_id not in (None, before.topic_id):
                return f"topic {topic} was recreated (topic id {before.topic_id} is now {after.topic_id})"
            elif after.partitions != read:
                return f"topic {topic} has {after.partitions} partitions, not {read} as when read"
        live = [tp for tp in tps if now.get(tp.topic) is not None]
        if live:
            starts = await consumer.beginning_offsets(live)
            ends = await consumer.end_offsets(live)
            for tp in live:
                pos = self._watermark.get((tp.topic, tp.partition))
                if ends[tp] < pos:
                    suspects[f"{tp}/end"] = (
                        f"{tp.topic}/{tp.partition} ends at {ends[tp]}, below the {pos} already read: "
                        "the topic was truncated or recreated"
                    )
                elif starts[tp] > pos and tp.topic not in self._expiring:
                    suspects[f"{tp}/start"] = (
                        f"{tp.topic}/{tp.partition} now starts at {starts[tp]}, past the {pos} read so far: "
                        "records not yet read were deleted"
                    )
        now_s = time.monotonic()
        hold_s = self._kafka.topic_suspect_hold_ms / 1000
        # A suspicion counts once the next check still finds it and it has held for the hold
        # period: a failed-over partition's high watermark recovers, a truncated one does not.
        since = {key: self._suspects.get(key, now_s) for key in suspects}
        self._suspects = since
        confirmed = [
            reason for key, reason in suspects.items() if since[key] < now_s and now_s - since[key] >= hold_s
        ]
        return confirmed[0] if confirmed else None

    def _rewrite(self, reason: str) -> None:
        if self._rewritten is not None:
            return
        self._rewritten = TopicRewritten(
            f"{reason}; stopped reading (restart to rebuild from the topics as they are now)"
        )
        self._stopped.set()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        if self._on_rewritten is None:
            log.error("%s: %s", self._client_id, self._rewritten.message)
            return
        # The owner logs it, saying what it does about it.
        self._report_task = asyncio.create_task(
            self._on_rewritten(self._rewritten), name=f"{self._client_id}-rewritten"
        )

    def _check_caught_up(self) -> None:
        if not self._caught_up.is_set() and all(
            self._watermark.get((tp.topic, tp.partition)) >= end for tp, end in self._targets.items()
        ):
            self._caught_up.set()

    def _hold_from_collector(self) -> None:
        """While catching up, hold the cyclic collector off what the batches build
        (myko/collector_hold.py); once caught up, hand it back."""
        if self._caught_up.is_set():
            self._collector.release()
        else:
            self._collector.hold()

    async def stop(self) -> None:
        await cancel_and_wait(self._check_task)
        self._check_task = None
        await cancel_and_wait(self._task)
        self._task = None
        if self._report_task is not None and self._report_task is not asyncio.current_task():
            await cancel_and_wait(self._report_task)
        self._report_task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        self._collector.release()  # stopped before catching up


def consumer_args(kafka: KafkaSettings, *, client_id: str, max_record_bytes: int) -> dict[str, Any]:
    """A TopicReader's consumer settings (bench/batch_floor.py reads with bare consumers so set)."""
    return {
        **kafka.client_args(),
        "group_id": None,
        "enable_auto_commit": False,
        "isolation_level": "read_committed",
        # Never jump silently: a position out of range means the topic's
        # history changed under us (see TopicReader._run).
        "auto_offset_reset": "none",
        "client_id": client_id,
        "fetch_max_wait_ms": 100,
        "max_partition_fetch_bytes": max(TopicReader.PARTITION_FETCH_BYTES, max_record_bytes),
        "fetch_max_bytes": max(TopicReader.FETCH_MAX_BYTES, max_record_bytes),
        "request_timeout_ms": kafka.request_timeout_ms,
    }
