"""The saga runtime: one consumer group per saga, events in, commands out, at most one effect.

For each event of the saga's source topics, in partition order:

1. the store is brought up to everything committed so far (store_fence.py);
2. the handler's pipeline runs over that one event and its emitted commands are
   collected;
3. each command is sent to CommandBus/Execute with a tx derived from the saga
   name, the event's position and the command itself (`command_tx`), so a
   redelivered event re-sends the same txs and command_svc answers from its tx
   log instead of acting twice;
4. only when every command of the event (and of every earlier event of its
   partition) is acknowledged is the offset committed.

Failures (docs/sagas.md), as the client raises them (myko/status.py maps the
statuses): retriable errors (Unavailable, DeadlineExceeded, Conflict,
ResourceExhausted of an overloaded server) are retried with backoff for as long
as this replica owns the partition; permanent rejections (InvalidArgument,
UnknownType, PermissionDenied, Unauthenticated, and LimitExceeded: the command
or its result is over a fixed limit) go to the dead-letter topic at once;
everything else (Rejected, ServerError, a handler exception) is retried up to
max_attempts, then dead-lettered. A dead letter is written before the offset
is committed, so no event is ever dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

import reactivex
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from google.protobuf.message import Message
from opentelemetry.trace import SpanKind, Status, StatusCode
from reactivex import Observable
from reactivex.scheduler.eventloop import AsyncIOScheduler

from myko.app import SagaRegistration
from myko.client import Client
from myko.dead_letter import DeadLetters
from myko.entities import EntityRegistry, EntityType
from myko.errors import (
    BadRecord,
    Defect,
    InvalidArgument,
    LimitExceeded,
    MykoError,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
    UnknownType,
)
from myko.events import decode_entity
from myko.lifecycle import cancel_and_wait
from myko.logs import fields, tx_context
from myko.metrics.consumer import ConsumerLag
from myko.metrics.saga import SagaRunMetrics
from myko.quarantine import Quarantine
from myko.repo import Store
from myko.retry import Backoff
from myko.saga_event import SAGA_NAMESPACE, Position, SagaEvent
from myko.settings import KafkaSettings
from myko.status import code_of
from myko.store_fence import StoreFence
from myko.tracing import SPAN_SAGA_EVENT, Tracing

log = logging.getLogger(__name__)

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"
# Called after the commands of an event were acknowledged, before its offset is
# committed (saga_svc wires its fault-injection hook here).
AfterExecute = Callable[[SagaEvent], None]

# The same command can only get the same answer: dead-letter at once.
PERMANENT: tuple[type[MykoError], ...] = (
    InvalidArgument,
    UnknownType,
    PermissionDenied,
    Unauthenticated,
    LimitExceeded,
)


def command_tx(saga: str, position: Position, command: Message, occurrence: int) -> str:
    """The tx of a saga's command: a function of the event and the command, not of timing.

    Keyed by the command's content (not its index), so a retry whose handler
    emits fewer commands (some effects already visible in state) still maps each
    command to the tx it had before. `occurrence` tells identical commands of
    one event apart.
    """
    digest = hashlib.sha256(command.SerializeToString(deterministic=True)).hexdigest()
    name = command.DESCRIPTOR.full_name
    return str(uuid.uuid5(SAGA_NAMESPACE, f"tx/{saga}/{position}/{name}/{digest}/{occurrence}"))


@dataclass(frozen=True)
class SagaConfig:
    group_id: str
    max_attempts: int
    backoff_initial_s: float
    backoff_max_s: float
    handler_timeout_s: float = 30.0


class _Failure(Exception):
    """One failed attempt at an event; `transient`/`permanent` choose what happens next."""

    def __init__(self, reason: str, *, transient: bool = False, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.permanent = permanent


class _Joined(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, saga: str, lag: ConsumerLag | None) -> None:
        self.saga = saga
        self.event = asyncio.Event()
        self._lag = lag

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        if self._lag is not None:
            for tp in revoked:
                self._lag.forget(tp.topic, tp.partition)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        log.info(
            "saga %s: assigned %s",
            self.saga,
            sorted(f"{tp.topic}/{tp.partition}" for tp in assigned) or "nothing",
        )
        self.event.set()


class SagaRunner:
    """Runs one saga in its own consumer group: a failing saga never holds up another."""

    def __init__(
        self,
        registration: SagaRegistration,
        *,
        kafka: KafkaSettings,
        entities: EntityRegistry,
        config: SagaConfig,
        store: Store,
        fence: StoreFence,
        commands: Client,
        dead_letters: DeadLetters,
        client_id: str,
        quarantine: Quarantine | None = None,
        after_execute: AfterExecute | None = None,
        metrics: SagaRunMetrics | None = None,
        lag: ConsumerLag | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.name = registration.name
        # Its own series (myko/metrics/saga.py) and its group's lag, when the service keeps them.
        self._metrics = metrics
        self._lag = lag
        self._tracing = tracing or Tracing.off()
        self._handler = registration.handler
        self._kafka = kafka
        self._config = config
        self._store = store
        self._fence = fence
        self._commands = commands
        self._dead_letters = dead_letters
        self._quarantine = quarantine or Quarantine(f"saga {registration.name}")
        self._client_id = client_id
        self._after_execute = after_execute
        self._types: dict[str, EntityType[Message]] = {
            et.topic(kafka.topic_prefix): et for et in map(entities.of, registration.sources)
        }
        self.group_id = f"{kafka.topic_prefix}{config.group_id}.{self.name}"
        self._joined = _Joined(self.name, lag)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def topics(self) -> list[str]:
        return sorted(self._types)

    @property
    def assignment(self) -> set[TopicPartition]:
        """The partitions this replica handles for this saga now."""
        return set(self._consumer.assignment()) if self._consumer is not None else set()

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            **self._kafka.client_args(),
            group_id=self.group_id,
            client_id=f"{self._client_id}.{self.name}",
            enable_auto_commit=False,
            isolation_level="read_committed",
            # A new saga sees the whole history: "never lose an event" includes old ones.
            auto_offset_reset="earliest",
            max_poll_records=500,
            fetch_max_wait_ms=100,
            request_timeout_ms=self._kafka.request_timeout_ms,
        )
        try:
            await consumer.start()
        except (KafkaError, OSError) as exc:
            await consumer.stop()
            raise Unavailable(f"saga {self.name}: cannot reach Kafka: {exc}") from exc
        consumer.subscribe(self.topics, listener=self._joined)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name=f"saga-{self.name}")

    async def wait_joined(self) -> None:
        """Return once the consumer group gave this replica its (possibly empty) share."""
        joined = asyncio.create_task(self._joined.event.wait())
        assert self._task is not None
        done, _ = await asyncio.wait({joined, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if joined not in done:
            joined.cancel()
            self._task.result()  # re-raise why the loop ended

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    # --- the loop ------------------------------------------------------------
    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        backoff = Backoff(initial_s=0.2, max_s=5.0)
        while True:
            try:
                fetched = await consumer.getmany(timeout_ms=500)
            except KafkaError as exc:
                log.warning("saga %s: fetch failed, retrying: %s", self.name, exc)
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
            if self._lag is not None:
                await self._measure_lag(consumer, fetched)
            if not fetched:
                continue
            try:
                await self._sync_store()
                # Partitions are independent: one slow or failing partition does not hold up the rest.
                await asyncio.gather(*(self._partition(tp, recs) for tp, recs in fetched.items() if recs))
            except Exception:
                # A bug, not a failed event (those are retried or dead-lettered): go back to
                # the last commit, so nothing fetched but not done is skipped.
                log.exception("saga %s: batch failed; resuming from the committed offsets", self.name)
                await asyncio.sleep(backoff.next())
                with contextlib.suppress(KafkaError, IllegalStateError):
                    await consumer.seek_to_committed()

    async def _measure_lag(
        self, consumer: AIOKafkaConsumer, fetched: dict[TopicPartition, list[Record]]
    ) -> None:
        """Each owned partition's end minus the next offset to be done (the first one just fetched)."""
        assert self._lag is not None
        for tp in consumer.assignment():
            recs = fetched.get(tp)
            try:
                pos = recs[0].offset if recs else await consumer.position(tp)
                end = consumer.last_stable_offset(tp)
            except (IllegalStateError, AssertionError, KafkaError):
                continue  # taken away meanwhile (a rebalance): its listener dropped it
            self._lag.update(tp.topic, tp.partition, pos, end)

    async def _sync_store(self) -> None:
        backoff = Backoff(initial_s=self._config.backoff_initial_s, max_s=self._config.backoff_max_s)
        while True:
            try:
                await self._fence.sync()
                return
            except MykoError as exc:
                log.warning("saga %s: state not synced yet, retrying: %s", self.name, exc)
                await asyncio.sleep(backoff.next())

    async def _partition(self, tp: TopicPartition, records: Sequence[Record]) -> None:
        assert self._consumer is not None
        done: Record | None = None
        for record in records:
            if not await self._handle(tp, record):
                break  # partition taken away: its new owner redoes the rest
            done = record
        if done is None:
            return
        try:
            await self._consumer.commit({tp: done.offset + 1})
            if self._lag is not None and self._owned(tp):
                end = self._consumer.last_stable_offset(tp)
                self._lag.update(tp.topic, tp.partition, done.offset + 1, end)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # A rebalance moved the partition: the new owner re-sends these
            # commands with the same txs, which command_svc answers as no-ops.
            log.warning("saga %s: commit of %s/%d failed: %s", self.name, tp.topic, tp.partition, exc)

    def _owned(self, tp: TopicPartition) -> bool:
        return tp in self.assignment

    async def _handle(self, tp: TopicPartition, record: Record) -> bool:
        """Act on one event until done or dead-lettered; False if the partition was lost meanwhile."""
        position = Position(record.topic, record.partition, record.offset)
        started = time.perf_counter()
        try:
            event = self._decode(record, position)
        except Exception as exc:
            # Counted and logged like every reader does; a saga also dead-letters it
            # and moves on, so one bad record never holds up its partition.
            bad = exc if isinstance(exc, BadRecord) else BadRecord(Defect.UNDECODABLE, f"{position}: {exc!r}")
            self._quarantine.report(record, bad)
            await self._dead_letter(
                record, position, f"not a Myko event ({bad.defect}): {bad.message}", attempts=0
            )
            self._processed(started)
            return True
        # The event's handling is a child of the command that wrote it (the record's
        # traceparent), and the commands it sends are children of the handling.
        parent = self._tracing.context_from_record(record.headers) if self._tracing.enabled else None
        with (
            tx_context(event.tx),
            self._tracing.span(
                SPAN_SAGA_EVENT,
                kind=SpanKind.CONSUMER,
                context=parent,
                attributes={"myko.saga": self.name, "myko.event": str(event), "myko.event.tx": event.tx},
            ) as span,
        ):
            backoff = Backoff(initial_s=self._config.backoff_initial_s, max_s=self._config.backoff_max_s)
            attempts = 0
            while True:
                attempts += 1
                try:
                    await self._attempt(event)
                    self._processed(started)
                    return True
                except _Failure as f:
                    failure = f
                except Exception as exc:
                    log.exception("saga %s: unexpected error at %s", self.name, event)
                    failure = _Failure(f"{type(exc).__name__}: {exc}")
                if failure.permanent or (not failure.transient and attempts >= self._config.max_attempts):
                    span.set_status(Status(StatusCode.ERROR, f"dead-lettered: {failure.reason}"))
                    await self._dead_letter(record, position, failure.reason, attempts=attempts)
                    self._processed(started)
                    return True
                if self._metrics is not None:
                    self._metrics.retries.inc()
                delay = backoff.next()
                span.add_event("myko.saga.retry", {"myko.attempt": attempts, "myko.reason": failure.reason})
                log.warning(
                    "saga %s: attempt %d at %s failed (%s); retrying in %.2fs",
                    self.name,
                    attempts,
                    event,
                    failure.reason,
                    delay,
                )
                await asyncio.sleep(delay)
                if not self._owned(tp):
                    return False

    def _processed(self, started: float) -> None:
        if self._metrics is not None:
            self._metrics.processed.inc()
            self._metrics.seconds.observe(time.perf_counter() - started)

    async def _attempt(self, event: SagaEvent) -> None:
        commands = await self._evaluate(event)
        seen: dict[str, int] = {}
        for command in commands:
            key = f"{command.DESCRIPTOR.full_name}/{command.SerializeToString(deterministic=True).hex()}"
            occurrence = seen.get(key, 0)
            seen[key] = occurrence + 1
            tx = command_tx(self.name, event.position, command, occurrence)
            try:
                await self._commands.execute(command, tx=tx)
                if self._metrics is not None:
                    self._metrics.commands.inc()
            except MykoError as exc:
                reason = (
                    f"{command.DESCRIPTOR.full_name} (tx {tx}) failed: {code_of(exc).name}: {exc.message}"
                )
                raise _Failure(
                    reason, transient=exc.retriable, permanent=isinstance(exc, PERMANENT)
                ) from None
        if commands:
            log.debug("saga %s: %s -> %d command(s) acknowledged", self.name, event, len(commands))
            if self._after_execute is not None:
                self._after_execute(event)

    async def _evaluate(self, event: SagaEvent) -> list[Message]:
        """Run the handler's pipeline over this one event; its emissions until completion."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        out: list[Message] = []

        def on_next(value: object) -> None:
            if isinstance(value, Message):
                out.append(value)
            elif not done.done():
                done.set_exception(TypeError(f"emitted {type(value).__name__}, not a command message"))

        def on_error(exc: Exception) -> None:
            if not done.done():
                done.set_exception(exc)

        def on_completed() -> None:
            if not done.done():
                done.set_result(None)

        try:
            pipeline = self._handler(reactivex.of(event), self._store)
            if not isinstance(pipeline, Observable):
                raise TypeError(f"saga {self.name} handler must return an Observable")
            subscription = pipeline.subscribe(
                on_next, on_error, on_completed, scheduler=AsyncIOScheduler(loop)
            )
        except Exception as exc:
            raise _Failure(f"handler raised {type(exc).__name__}: {exc}") from exc
        try:
            await asyncio.wait_for(done, self._config.handler_timeout_s)
        except TimeoutError:
            raise _Failure(f"handler did not complete within {self._config.handler_timeout_s}s") from None
        except Exception as exc:
            raise _Failure(f"handler raised {type(exc).__name__}: {exc}") from exc
        finally:
            subscription.dispose()
        return out

    def _decode(self, record: Record, position: Position) -> SagaEvent:
        entity_type = self._types[record.topic]
        ev, entity = decode_entity(record, entity_type)
        return SagaEvent(
            saga=self.name,
            op=ev.op,
            entity_class=entity_type.cls,
            id=ev.id,
            entity=entity,
            tx=ev.tx,
            ts_ns=ev.ts.ToNanoseconds(),
            source=ev.source,
            position=position,
            issued_by=ev.principal,
        )

    async def _dead_letter(self, record: Record, position: Position, reason: str, *, attempts: int) -> None:
        # Until the dead letter is safely written the offset stays uncommitted: keep trying.
        backoff = Backoff(initial_s=self._config.backoff_initial_s, max_s=self._config.backoff_max_s)
        while True:
            try:
                await self._dead_letters.send(
                    saga=self.name,
                    position=position,
                    key=record.key,
                    value=record.value,
                    headers=list(record.headers),
                    reason=reason,
                    attempts=attempts,
                )
            except Unavailable as exc:
                log.warning("saga %s: %s; retrying", self.name, exc)
                await asyncio.sleep(backoff.next())
                continue
            if self._metrics is not None:
                self._metrics.dead_lettered.inc()
            # The one line per dead letter.
            log.error(
                "saga %s: dead-lettered %s after %d attempt(s): %s",
                self.name,
                position,
                attempts,
                reason,
                extra=fields(
                    saga=self.name,
                    topic=position.topic,
                    partition=position.partition,
                    offset=position.offset,
                    attempts=attempts,
                    reason=reason,
                    dead_letter_topic=self._dead_letters.topic,
                ),
            )
            return
