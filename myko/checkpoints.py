"""A service's checkpoints: its Store's state as of a read_committed watermark W,
written now and then to a local directory, and loaded at start instead of
replaying the entity topics from their beginning (docs/checkpoints.md).

A restart from a checkpoint must give exactly the state a full replay gives. It
does when the topics' records past W are still all there in substance, which
`refusal` checks against the topics as the starting reader finds them:

- same topic id and partition count as when written (not deleted and
  recreated, not repartitioned);
- each partition still starts at or below W (and no later than it started
  then: records deleted since would be missing from a full replay) and still
  ends at or past W (not truncated);
- younger than the topic's `delete.retention.ms`: compaction may drop records
  past W only in favour of later records of the same key, except tombstones,
  which the cleaner removes for good once that long has passed; a checkpoint
  older than that could bring a deleted entity back;
- a whole, sound file of a format version this code reads (checksums, an end
  frame; written under a temporary name, fsynced, then renamed).

Anything else: the reason is logged and the service replays from the beginning.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path

from aiokafka.errors import KafkaError

from myko import checkpoint_file
from myko.checkpoint_file import CheckpointUnusable, Header, TopicAtCheckpoint, TypeState
from myko.collector_hold import CollectorHold
from myko.lifecycle import cancel_and_wait
from myko.reader import TopicReader, TopicsAtStart
from myko.repo import Store
from myko.settings import CheckpointSettings, KafkaSettings
from myko.topics import topic_config_ints

log = logging.getLogger(__name__)

SUFFIX = ".ckpt"
_PARTIAL = ".partial"
# Checkpoints kept: the newest, and the one before in case the newest is refused.
KEEP = 2
# How long a checkpoint waits for the store to reach the topics' ends before giving up this time.
_REACH_ENDS_S = 60.0
# After a failed write, the next attempt waits at least this long (or the interval, if shorter).
_RETRY_AFTER_S = 60.0
# With nothing applied, the newest checkpoint is still rewritten once this old, so that an idle
# service keeps one younger than the topics' delete.retention.ms (24 h for Myko's topics).
REFRESH_IDLE_MS = 6 * 3600 * 1000


def refusal(
    header: Header,
    *,
    service: str,
    types: Mapping[str, str],
    keep_events: bool,
    found: TopicsAtStart,
    delete_retention_ms: Mapping[str, int],
    now_ms: int,
) -> str | None:
    """Why this checkpoint cannot stand for a replay of the topics as found, or None."""
    if header.service != service:
        return f"written by {header.service}, not {service}"
    if dict(header.types) != dict(types):
        return f"of entity types {sorted(header.types)} on other topics than this app's {sorted(types)}"
    if keep_events and not header.envelopes:
        return "holds no events (written by a store that keeps none)"
    if set(header.topics) != set(types.values()):
        return f"covers topics {sorted(header.topics)}, not {sorted(types.values())}"
    for topic, then in sorted(header.topics.items()):
        if topic not in found.identities:
            return f"topic {topic} could not be described now"
        now = found.identities[topic]
        if now is None:
            return f"topic {topic} no longer exists"
        if then.topic_id is None or now.topic_id is None:
            return f"topic {topic}: no topic id to compare (the broker reports none)"
        if now.topic_id.hex != then.topic_id:
            return f"topic {topic} was recreated (topic id {then.topic_id} is now {now.topic_id.hex})"
        if now.partitions != then.partitions or set(then.watermark) != set(range(then.partitions)):
            return f"topic {topic} has {now.partitions} partitions, the checkpoint {then.partitions}"
        for partition, w in sorted(then.watermark.items()):
            tp = (topic, partition)
            start, end = found.log_starts.get(tp), found.ends.get(tp)
            if start is None or end is None:
                return f"{topic}/{partition} has no offsets now"
            if start > w:
                return (
                    f"{topic}/{partition} starts at {start}, past the checkpoint's {w}: records were deleted"
                )
            if start > then.log_start.get(partition, 0):
                return (
                    f"{topic}/{partition} starts at {start}, it started at {then.log_start.get(partition, 0)}: "
                    "records were deleted since"
                )
            if end < w:
                return (
                    f"{topic}/{partition} ends at {end}, below the checkpoint's {w}: truncated or recreated"
                )
        retention = delete_retention_ms.get(topic)
        if retention is None:
            return f"delete.retention.ms of {topic} is unknown"
        age = now_ms - header.safe_since_ms
        limit = retention - min(retention // 10, 3600 * 1000)  # a margin for clocks and the cleaner
        if age >= limit:
            return (
                f"it is {age} ms old, {topic} removes tombstones after delete.retention.ms={retention} "
                f"(limit {limit} ms): a delete past its watermark may be gone"
            )
    return None


async def delete_retention_ms(kafka: KafkaSettings, topics: list[str]) -> dict[str, int]:
    """Each topic's effective delete.retention.ms (the broker's default when not set on it)."""
    return await topic_config_ints(kafka, topics, "delete.retention.ms")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


_Loaded = tuple[Header, dict[str, TypeState], float]


async def _read(path: Path) -> _Loaded:
    """The whole checkpoint, read in a thread with the cyclic collector held off; and how long it took."""
    started = time.monotonic()
    hold = CollectorHold()
    hold.hold()
    try:
        header, states = await asyncio.to_thread(checkpoint_file.read, path)
        hold.hold()  # what the load built goes to the collector's oldest generation
    finally:
        hold.release()
    return header, states, time.monotonic() - started


class Checkpoints:
    """One service replica's checkpoint directory (never shared between replicas).

    `resume` is the reader's start hook: it loads the newest usable checkpoint
    into the (empty) store and says where to read from. `run` writes one every
    `every_records` applied records, or every `interval_ms` when anything was
    applied at all; `applied` counts them.
    """

    def __init__(
        self,
        directory: Path,
        *,
        service: str,
        store: Store,
        kafka: KafkaSettings,
        keep_events: bool,
        interval_ms: int,
        every_records: int,
    ) -> None:
        self.directory = directory
        self._service = service
        self._store = store
        self._kafka = kafka
        self._keep_events = keep_events
        self._interval_s = interval_ms / 1000
        self._every_records = every_records
        self._types = {et.name: et.topic(kafka.topic_prefix) for et in store.entities}
        self._since = 0
        # safe_since_ms of the newest checkpoint loaded or written (none yet: since when this ran).
        self._newest_safe_ms = _now_ms()
        # The newest checkpoint being read ahead (prefetch), until resume takes or drops it.
        self._prefetched: tuple[Path, asyncio.Task[_Loaded]] | None = None
        # What the last start did, for logs and tests: the file loaded, or why none was.
        self.loaded: Path | None = None
        self.refused: list[tuple[Path, str]] = []
        # The task that writes them (`start_writing`), while the service runs.
        self._writer: asyncio.Task[None] | None = None

    @classmethod
    def of(
        cls,
        settings: CheckpointSettings,
        *,
        instance_id: str,
        service: str,
        store: Store,
        kafka: KafkaSettings,
    ) -> Checkpoints | None:
        """The service's checkpoints as configured, or None when off (MYKO_CHECKPOINT_DIR empty)."""
        if not settings.dir:
            return None
        return cls(
            # One directory per replica (its instance id is stable across restarts).
            Path(settings.dir) / re.sub(r"[^A-Za-z0-9._-]", "_", instance_id),
            service=service,
            store=store,
            kafka=kafka,
            keep_events=store.keeps_events,
            interval_ms=settings.interval_ms,
            every_records=settings.every_records,
        )

    def applied(self, records: int) -> None:
        self._since += records

    def files(self) -> list[Path]:
        """Whole checkpoints here, newest first."""
        if not self.directory.is_dir():
            return []
        return sorted((p for p in self.directory.iterdir() if p.name.endswith(SUFFIX)), reverse=True)

    # --- start -------------------------------------------------------------
    def prefetch(self) -> None:
        """Start reading the newest checkpoint in a thread now, while the service connects
        to Kafka (most of its start is waiting on the network). `resume` still judges it
        before taking it, and drops it when refused."""
        try:
            newest = self.files()[:1]
        except OSError:
            return
        if newest:
            task = asyncio.create_task(_read(newest[0]), name="checkpoint-prefetch")
            # Its failure is resume's to report (a start that fails before resume drops it).
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._prefetched = (newest[0], task)

    async def _load(self, path: Path) -> _Loaded:
        prefetched, self._prefetched = self._prefetched, None
        if prefetched is not None and prefetched[0] == path:
            return await prefetched[1]
        if prefetched is not None:
            prefetched[1].cancel()
        return await _read(path)

    async def resume(self, found: TopicsAtStart) -> Mapping[tuple[str, int], int] | None:
        try:
            return await self._resume(found)
        finally:
            if self._prefetched is not None:  # not taken: its thread finishes, its result is dropped
                self._prefetched[1].cancel()
                self._prefetched = None

    async def _resume(self, found: TopicsAtStart) -> Mapping[tuple[str, int], int] | None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for partial in self.directory.glob(f"*{_PARTIAL}"):
                # A checkpoint whose writing was cut short (the process died): never whole.
                log.warning("removing %s, a checkpoint not finished when its writer stopped", partial)
                partial.unlink(missing_ok=True)
            candidates = self.files()
        except OSError as exc:
            log.warning("cannot use %s (%s): reading the topics from the beginning", self.directory, exc)
            return None
        if not candidates:
            log.info("no checkpoint in %s: reading the topics from the beginning", self.directory)
            return None
        try:
            retention = await delete_retention_ms(self._kafka, sorted(self._types.values()))
        except (KafkaError, OSError) as exc:
            log.warning("cannot read the topics' delete.retention.ms (%s): no checkpoint can be trusted", exc)
            retention = {}
        for path in candidates:
            positions = await self._try(path, found, retention)
            if positions is not None:
                return positions
        log.warning("no usable checkpoint in %s: reading the topics from the beginning", self.directory)
        return None

    async def _try(
        self, path: Path, found: TopicsAtStart, retention: Mapping[str, int]
    ) -> Mapping[tuple[str, int], int] | None:
        started = time.monotonic()
        states: dict[str, TypeState] = {}
        read_s = 0.0
        try:
            header = checkpoint_file.read_header(path)
            why = refusal(
                header,
                service=self._service,
                types=self._types,
                keep_events=self._keep_events,
                found=found,
                delete_retention_ms=retention,
                now_ms=_now_ms(),
            )
            if why is None:
                whole, states, read_s = await self._load(path)
                if whole != header:
                    why = "changed while it was read"
        except (CheckpointUnusable, OSError) as exc:
            why = str(exc)
        if why is not None:
            log.warning(
                "checkpoint %s refused (reading the topics from the beginning instead): %s", path, why
            )
            self.refused.append((path, why))
            return None
        for name, state in states.items():
            self._store.repo(name).install_state(state.encoded, state.positions, state.envelopes)
        positions = {(t, p): w for t, at in header.topics.items() for p, w in at.watermark.items()}
        log.info(
            "loaded checkpoint %s: %d entities, read in %.2f s (read ahead: waited %.2f s for it and "
            "the checks); reading on from %d partitions",
            path.name,
            header.entities,
            read_s,
            time.monotonic() - started,
            len(positions),
        )
        self.loaded = path
        self._newest_safe_ms = header.safe_since_ms
        return positions

    # --- writing -----------------------------------------------------------
    def start_writing(self, reader: TopicReader, *, name: str) -> None:
        """Write checkpoints (`run`) in a task of their own, from now until `stop_writing`."""
        if self._writer is None:
            self._writer = asyncio.create_task(self.run(reader), name=name)

    async def stop_writing(self) -> None:
        task, self._writer = self._writer, None
        await cancel_and_wait(task)

    async def run(self, reader: TopicReader) -> None:
        """Write checkpoints until cancelled (or the reader stops on a rewritten topic)."""
        last = time.monotonic()
        not_before = 0.0
        tick_s = min(1.0, self._interval_s / 10)
        while reader.rewritten is None:
            await asyncio.sleep(tick_s)
            now = time.monotonic()
            due = (
                self._since >= self._every_records
                or (self._since > 0 and now - last >= self._interval_s)
                or _now_ms() - self._newest_safe_ms >= REFRESH_IDLE_MS
            )
            if not due or now < not_before:
                continue
            since, self._since = self._since, 0
            try:
                await self.write(reader)
                last = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._since += since
                not_before = time.monotonic() + min(self._interval_s, _RETRY_AFTER_S)
                log.warning("cannot write a checkpoint to %s (trying again later): %s", self.directory, exc)

    async def write(self, reader: TopicReader) -> Path | None:
        """Write one now: the store's state once it has reached the topics' ends as of now."""
        safe_since_ms = _now_ms()
        log_starts = await reader.log_starts()
        ends = await reader.end_offsets()
        await self._store.wait_for(ends, timeout_s=_REACH_ENDS_S)
        # From here to the copies, no await: the state and its watermark are one moment.
        if reader.rewritten is not None:
            return None
        watermark = self._store.watermark.positions
        topics: dict[str, TopicAtCheckpoint] = {}
        for topic in self._types.values():
            identity = reader.identities.get(topic)
            if identity is None or identity.topic_id is None:
                log.warning(
                    "no topic id known for %s: not writing a checkpoint it could not be checked by", topic
                )
                return None
            topics[topic] = TopicAtCheckpoint(
                topic_id=identity.topic_id.hex,
                partitions=identity.partitions,
                watermark={p: o for (t, p), o in watermark.items() if t == topic},
                log_start={p: o for (t, p), o in log_starts.items() if t == topic},
            )
        states = {name: TypeState(*self._store.repo(name).stored_state()) for name in self._types}
        header = Header(
            service=self._service,
            created_ms=_now_ms(),
            safe_since_ms=safe_since_ms,
            types=dict(self._types),
            topics=topics,
            envelopes=self._keep_events,
            entities=sum(len(s.encoded) for s in states.values()),
        )
        started = time.monotonic()
        path = await asyncio.to_thread(self._write_file, header, states)
        self._newest_safe_ms = safe_since_ms
        log.info(
            "wrote checkpoint %s: %d entities in %.2f s",
            path.name,
            header.entities,
            time.monotonic() - started,
        )
        return path

    def _write_file(self, header: Header, states: dict[str, TypeState]) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"checkpoint-{header.created_ms:016d}"
        partial = self.directory / f"{name}{_PARTIAL}"
        final = self.directory / f"{name}{SUFFIX}"
        try:
            checkpoint_file.write(partial, header, states)
            os.replace(partial, final)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        # The rename itself is durable once the directory is synced.
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        for old in self.files()[KEEP:]:
            old.unlink(missing_ok=True)
        return final
