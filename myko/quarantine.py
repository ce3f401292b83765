"""Records that cannot be decoded: counted, logged, copied aside, never applied.

A record on a Myko topic that is not what Myko writes (a key that is not
UTF-8, a malformed header, a value that is not the entity, ...) must not cost
the records around it. Every consumer decodes record by record through
`Quarantine.decode`: a bad record is counted (`stats`), logged once per read
(rate-limited, so a flood cannot fill the disk) and, by the one service that
owns the topic's copies, written to the quarantine topic with its coordinates
and the reason. docs/quarantine.md says which service copies what and why.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from myko.errors import BadRecord, Defect, Unavailable
from myko.events import RawRecord, where
from myko.lifecycle import Lifecycle, cancel_and_wait
from myko.logs import fields
from myko.retry import Backoff
from myko.settings import KafkaSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
# Kafka allows null header values; a copy keeps the original's as they were.
CopyHeaders = list[tuple[str, bytes | None]]

# Headers a quarantine copy carries after the original record's own headers.
H_TOPIC = "myko-q-topic"
H_PARTITION = "myko-q-partition"
H_OFFSET = "myko-q-offset"
H_TIMESTAMP = "myko-q-timestamp"
H_KEY = "myko-q-key"
H_DEFECT = "myko-q-defect"
H_REASON = "myko-q-reason"
H_SERVICE = "myko-q-service"
# "null" when the original value was null (the copy's own value is then empty:
# a null would be a tombstone on the compacted quarantine topic); "dropped"
# when the original was too large to copy with the extra headers.
H_VALUE = "myko-q-value"

MAX_REASON_BYTES = 1024
# Copies waiting for the broker; past this the readers wait (TopicReader's pace).
MAX_PENDING_BYTES = 32 * 1024 * 1024


def copy_key(record: RawRecord) -> bytes:
    """The copy's key: the record's coordinates, so the copies of one record compact to one.

    The timestamp keeps a record of a recreated topic at the same offset apart.
    """
    return f"{record.topic}/{record.partition}/{record.offset}/{record.timestamp}".encode()


@dataclass
class QuarantineStats:
    """What a service has quarantined since it started (for metrics)."""

    # (topic, defect) -> records read that could not be decoded.
    records: Counter[tuple[str, str]] = field(default_factory=Counter)
    copies_written: int = 0
    copy_failures: int = 0
    log_lines_suppressed: int = 0

    @property
    def total(self) -> int:
        return sum(self.records.values())


class _LogBudget:
    """A token bucket of log lines: `rate_per_s` on average, bursts of ten seconds' worth."""

    def __init__(self, rate_per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate_per_s
        self._burst = max(1.0, rate_per_s * 10)
        self._tokens = self._burst
        self._clock = clock
        self._last = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


@dataclass(frozen=True)
class _Copy:
    key: bytes
    value: bytes
    headers: CopyHeaders

    @property
    def size(self) -> int:
        return len(self.key) + len(self.value) + sum(len(k) + len(v or b"") for k, v in self.headers)


class QuarantineWriter(Lifecycle):
    """Writes quarantine copies in the background with an idempotent producer.

    A copy is retried until the broker has it; while more than
    MAX_PENDING_BYTES wait, `wait_room` holds the readers back instead of
    dropping copies or growing without bound.
    """

    def __init__(self, kafka: KafkaSettings, topic: str, *, client_id: str, stats: QuarantineStats) -> None:
        self.topic = topic
        self._kafka = kafka
        self._client_id = client_id
        self._stats = stats
        self._pending: deque[_Copy] = deque()
        self._pending_bytes = 0
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None

    def enqueue(self, copy: _Copy) -> None:
        self._pending.append(copy)
        self._pending_bytes += copy.size
        self._idle.clear()
        self._wake.set()
        if self._pending_bytes > MAX_PENDING_BYTES:
            self._room.clear()

    async def wait_room(self) -> None:
        await self._room.wait()

    async def start(self) -> None:
        producer = AIOKafkaProducer(
            **self._kafka.client_args(),
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=self._kafka.request_timeout_ms,
        )
        try:
            await producer.start()
        except (KafkaError, OSError) as exc:
            await producer.stop()
            raise Unavailable(f"cannot start the quarantine producer: {exc}") from exc
        self._producer = producer
        self._task = asyncio.create_task(self._run(), name="quarantine-writer")

    async def flush(self, *, timeout_s: float) -> None:
        """Wait until every copy enqueued so far is written (tests, shutdown)."""
        async with asyncio.timeout(timeout_s):
            await self._idle.wait()

    async def stop(self) -> None:
        if self._pending:
            try:
                await self.flush(timeout_s=5.0)
            except TimeoutError:
                log.warning("stopping with %d quarantine copies unwritten", len(self._pending))
        await cancel_and_wait(self._task)
        self._task = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def _run(self) -> None:
        backoff = Backoff(initial_s=0.2, max_s=5.0)
        while True:
            if not self._pending:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            copy = self._pending[0]
            try:
                await self._send(copy)
            except (KafkaError, OSError) as exc:
                self._stats.copy_failures += 1
                log.warning("cannot write to quarantine topic %s, retrying: %s", self.topic, exc)
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
            self._pending.popleft()
            self._pending_bytes -= copy.size
            self._stats.copies_written += 1
            if self._pending_bytes <= MAX_PENDING_BYTES // 2:
                self._room.set()

    async def _send(self, copy: _Copy) -> None:
        assert self._producer is not None
        try:
            await self._producer.send_and_wait(
                self.topic, key=copy.key, value=copy.value, headers=copy.headers
            )
        except MessageSizeTooLargeError:
            # The original plus our headers is over the limit: keep the coordinates and reason.
            headers = [(k, v) for k, v in copy.headers if k != H_VALUE]
            headers.append((H_VALUE, b"dropped"))
            await self._producer.send_and_wait(self.topic, key=copy.key, value=b"", headers=headers)


class Quarantine:
    """One service's handling of undecodable records; copies those of `copy_topics`."""

    def __init__(
        self,
        service: str,
        *,
        log_per_s: float = 5.0,
        stats: QuarantineStats | None = None,
        writer: QuarantineWriter | None = None,
        copy_topics: Collection[str] = (),
    ) -> None:
        self.service = service
        self.stats = stats or QuarantineStats()
        self._writer = writer
        self._copy_topics = frozenset(copy_topics) if writer is not None else frozenset()
        self._budget = _LogBudget(log_per_s)

    @classmethod
    def writing(
        cls,
        service: str,
        kafka: KafkaSettings,
        topic: str,
        *,
        copy_topics: Collection[str],
        client_id: str,
        log_per_s: float = 5.0,
    ) -> Quarantine:
        stats = QuarantineStats()
        writer = QuarantineWriter(kafka, topic, client_id=client_id, stats=stats)
        return cls(service, log_per_s=log_per_s, stats=stats, writer=writer, copy_topics=copy_topics)

    @property
    def writer(self) -> QuarantineWriter | None:
        return self._writer

    def decode(self, record: RawRecord, decoder: Callable[[RawRecord], T]) -> T | None:
        """`decoder(record)`, or None once a record it cannot decode has been quarantined."""
        try:
            return decoder(record)
        except BadRecord as exc:
            self.report(record, exc)
        except Exception as exc:
            # A decoder bug must still cost this record only.
            log.exception("unexpected failure decoding %s", where(record))
            self.report(
                record, BadRecord(Defect.UNDECODABLE, f"{where(record)}: {type(exc).__name__}: {exc}")
            )
        return None

    def report(self, record: RawRecord, error: BadRecord) -> None:
        self.stats.records[(record.topic, str(error.defect))] += 1
        copied = record.topic in self._copy_topics
        if self._budget.take():
            suppressed = self.stats.log_lines_suppressed
            self.stats.log_lines_suppressed = 0
            log.warning(
                "%s: bad record %s (%s): %s%s%s",
                self.service,
                where(record),
                error.defect,
                error.message,
                "; copied to the quarantine topic" if copied else "",
                f" ({suppressed} more bad records not logged)" if suppressed else "",
                extra=fields(
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    defect=str(error.defect),
                    reason=error.message,
                    copied=copied,
                    quarantine_topic=self._writer.topic if copied and self._writer is not None else None,
                    suppressed_before=suppressed,
                ),
            )
        else:
            self.stats.log_lines_suppressed += 1
        if copied:
            assert self._writer is not None
            self._writer.enqueue(self._copy(record, error))

    def _copy(self, record: RawRecord, error: BadRecord) -> _Copy:
        headers: CopyHeaders = list(record.headers)
        headers += [
            (H_TOPIC, record.topic.encode()),
            (H_PARTITION, str(record.partition).encode()),
            (H_OFFSET, str(record.offset).encode()),
            (H_TIMESTAMP, str(record.timestamp).encode()),
            (H_DEFECT, str(error.defect).encode()),
            (H_REASON, error.message.encode()[:MAX_REASON_BYTES]),
            (H_SERVICE, self.service.encode()),
        ]
        if record.key is not None:
            headers.append((H_KEY, record.key))
        if record.value is None:
            headers.append((H_VALUE, b"null"))
        return _Copy(key=copy_key(record), value=record.value or b"", headers=headers)

    async def wait_room(self) -> None:
        """Return once the writer has room for more copies (at once when it copies nothing)."""
        if self._writer is not None:
            await self._writer.wait_room()

    async def start(self) -> None:
        if self._writer is not None:
            await self._writer.start()

    async def stop(self) -> None:
        if self._writer is not None:
            await self._writer.stop()
