"""The Kafka Publisher: several commands' events, and their tx-log records, in one transaction.

Each command's tx-log record is sent with its events, in the same produce
request (so without their offsets: command_result.logged_result).

Group commit: the command writer hands over every command validated since the
last commit, so throughput grows with concurrency while each command still
lands all-or-nothing. A fixed transactional id per replica fences a zombie
predecessor after a restart.

A failed commit leaves nothing visible and raises Unavailable (retriable), or
Fenced once another producer has taken the transactional id. Fenced is final:
this publisher never starts a producer by itself after it, since that would
fence the successor in turn; only `start()` (a new election) does. Any other
failure that may leave aiokafka's producer unusable (its sender task died, and
its transaction state only raises AssertionError from then on) replaces the
producer, so the next commit starts clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, ProducerFenced, RecordTooLargeError
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from myko.command_result import check_result_size, completed, logged_result
from myko.errors import Fenced, Unavailable
from myko.events import to_record
from myko.lifecycle import Lifecycle
from myko.ports import Committed, Proposal
from myko.settings import KafkaSettings
from myko.topics import RECORD_OVERHEAD_BYTES
from myko.tracing import SPAN_KAFKA_COMMIT, Tracing
from myko.txlog import txlog_record

log = logging.getLogger(__name__)


def producer_args(kafka: KafkaSettings, *, transactional_id: str, max_result_bytes: int) -> dict[str, Any]:
    """The transactional producer's settings (bench/batch_floor.py drives a bare producer with them)."""
    return {
        **kafka.client_args(),
        "transactional_id": transactional_id,
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 0,
        "max_request_size": max_result_bytes + RECORD_OVERHEAD_BYTES,
        # aiokafka keeps one produce request in flight per broker, carrying one
        # batch per partition: with the default 16 KiB, a group commit of a few
        # hundred commands took a dozen sequential round trips. One batch per
        # partition per transaction instead (it stays within max.message.bytes,
        # which start-up checks against the result limit).
        "max_batch_size": max_result_bytes + RECORD_OVERHEAD_BYTES,
        "request_timeout_ms": kafka.request_timeout_ms,
        "transaction_timeout_ms": 60_000,
    }


class TransactionalPublisher(Lifecycle):
    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        transactional_id: str,
        topic_of: Callable[[str], str],
        txlog_topic: str,
        max_result_bytes: int,
        limit_name: str = "MYKO_MAX_RESULT_BYTES",
        tracing: Tracing | None = None,
    ) -> None:
        self._kafka = kafka
        self._tracing = tracing or Tracing.off()
        self._transactional_id = transactional_id
        self._topic_of = topic_of
        self._txlog_topic = txlog_topic
        self._max_result_bytes = max_result_bytes
        self._limit_name = limit_name
        self._partitions: dict[str, int] = {}
        self._producer: AIOKafkaProducer | None = None
        # Why this publisher is fenced, once it is: it then writes nothing until start().
        self._fenced: str | None = None

    @property
    def max_result_bytes(self) -> int:
        return self._max_result_bytes

    def limit_to(self, max_result_bytes: int, reason: str) -> None:
        """Lower the result limit (a topic accepts less than configured)."""
        if max_result_bytes < self._max_result_bytes:
            log.warning("results limited to %d bytes: %s", max_result_bytes, reason)
            self._max_result_bytes = max_result_bytes

    def know_partitions(self, partitions: dict[str, int]) -> None:
        """Partition counts per topic, which bound a result's visible_at before writing."""
        self._partitions.update(partitions)

    async def start(self) -> None:
        """Start a producer: its InitProducerId fences any other holder of the transactional id."""
        self._fenced = None
        if self._producer is not None:
            await self._drop(self._producer)
        producer = AIOKafkaProducer(
            **producer_args(
                self._kafka, transactional_id=self._transactional_id, max_result_bytes=self._max_result_bytes
            )
        )
        try:
            await producer.start()
        except (TimeoutError, KafkaError, OSError) as exc:
            await producer.stop()
            raise Unavailable(f"cannot start producer: {exc}") from exc
        self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    def check_size(self, proposal: Proposal) -> int:
        return check_result_size(
            proposal,
            topic_of=self._topic_of,
            partitions_of=self._partition_count,
            max_bytes=self._max_result_bytes,
            limit_name=self._limit_name,
        )

    def topic_of(self, entity_type: str) -> str:
        return self._topic_of(entity_type)

    def _partition_count(self, topic: str) -> int:
        # Unknown: as many as there are events (an upper bound, never too small).
        return self._partitions.get(topic, 2**31)

    async def commit(self, proposals: Sequence[Proposal]) -> list[Committed]:
        """Write everything in one transaction; on failure nothing is visible."""
        for p in proposals:
            self.check_size(p)
        producer = await self._usable_producer()
        spans = self._start_spans(proposals)
        try:
            async with self._transaction(producer, "commit failed"):
                committed = await self._send_all(producer, proposals, spans)
        except BaseException as exc:
            _end_spans(spans, exc.__cause__ or exc)  # what the broker said, not its mapping
            raise
        _end_spans(spans, None)
        return committed

    @contextlib.asynccontextmanager
    async def _transaction(self, producer: AIOKafkaProducer, what: str) -> AsyncIterator[None]:
        """One transaction around the block: committed after it, aborted if it fails;
        a failure is raised in the one hierarchy (`_raise_failure`)."""
        try:
            await producer.begin_transaction()
            try:
                yield
                await producer.commit_transaction()
            except BaseException as exc:
                await self._abort(producer, exc)
                raise
        except BaseException as exc:
            await self._raise_failure(producer, exc, what)
            raise

    async def _usable_producer(self) -> AIOKafkaProducer:
        if self._fenced is not None:
            raise Fenced(f"another writer took over: {self._fenced}")
        if self._producer is None:
            await self.start()  # a previous failure dropped the producer
        assert self._producer is not None
        return self._producer

    async def _raise_failure(self, producer: AIOKafkaProducer, exc: BaseException, what: str) -> None:
        """Raise what a failed transaction means, in the one hierarchy; returns for
        a BaseException that is not an Exception (a cancellation), to be re-raised."""
        if isinstance(exc, ProducerFenced):
            # Never restarted from here: a new producer would fence the successor.
            self._fenced = str(exc)
            await self._drop(producer)
            raise Fenced(f"another writer took over: {exc}") from exc
        if isinstance(exc, (MessageSizeTooLargeError, RecordTooLargeError)):
            # check_size keeps results under the limit, and start-up checks the topics
            # accept that much: getting here means a topic's config changed under us.
            log.error("the broker refused a record as too large (topic max.message.bytes?): %s", exc)
            raise Unavailable(f"{what}, nothing was written: {exc}") from exc
        if isinstance(exc, (TimeoutError, KafkaError, OSError)):
            raise Unavailable(f"broker unavailable, {what}: {exc}") from exc
        if isinstance(exc, Exception):
            # aiokafka's producer broke (e.g. "Invalid state transition" once its sender
            # task died): its open transaction was never committed; a new one starts clean.
            log.warning("the Kafka producer failed (%s: %s); replacing it", type(exc).__name__, exc)
            await self._drop(producer)
            raise Unavailable(f"{what}, the producer failed: {type(exc).__name__}") from exc

    def _start_spans(self, proposals: Sequence[Proposal]) -> list[Span | None]:
        """One span per command for the transaction that writes it (all share its timing)."""
        tracing = self._tracing
        if not tracing.enabled:
            return [None] * len(proposals)
        tracer = tracing.tracer
        return [
            None
            if tracing.skips(p.trace or Context())
            else tracer.start_span(
                SPAN_KAFKA_COMMIT,
                context=p.trace or Context(),
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation.type": "send",
                    "myko.tx": p.tx,
                    "myko.events": len(p.events),
                    # Commands committed in the same transaction (group commit).
                    "myko.batch.commands": len(proposals),
                },
            )
            for p in proposals
        ]

    async def _send_all(
        self, producer: AIOKafkaProducer, proposals: Sequence[Proposal], spans: Sequence[Span | None]
    ) -> list[Committed]:
        # Each command's events and its tx-log record go out together, without
        # waiting for the events' offsets: one produce round trip per transaction,
        # not two. The record holds the result's logged form (no offsets); the
        # caller gets the full result, built once the offsets are known.
        pending = []
        shared_trace: Context | None = None
        shared_headers: list[tuple[str, bytes]] = []
        for p, span in zip(proposals, spans, strict=True):
            # Every record of the command names its Kafka write as the parent to
            # link to (repo_svc, the emissions) or to continue from (sagas).
            # A command whose trace is not sampled has no span here: its records name
            # its (unsampled) trace all the same, so what they cause stays unsampled.
            # The commands of one ExecuteBatch share that context: its headers are made once.
            if span is not None:
                extra = self._tracing.record_headers(trace.set_span_in_context(span))
            elif p.trace is None:
                extra = []
            elif p.trace is not shared_trace:
                shared_trace, shared_headers = p.trace, self._tracing.record_headers(p.trace)
                extra = shared_headers
            else:
                extra = shared_headers
            futs = []
            for ev in p.events:
                rec = to_record(ev, self._topic_of(ev.type))
                futs.append(
                    await producer.send(rec.topic, key=rec.key, value=rec.value, headers=rec.headers + extra)
                )
            logged = logged_result(p)
            rec = txlog_record(self._txlog_topic, p.tx, p.digest, logged)
            at = await producer.send(rec.topic, key=rec.key, value=rec.value, headers=rec.headers + extra)
            pending.append((logged, futs, at))
        out = []
        for logged, futs, at in pending:
            metas = await asyncio.gather(*futs)
            md = await at
            out.append(
                Committed(
                    result=completed(logged, [(m.topic, m.partition, m.offset) for m in metas]),
                    txlog_partition=md.partition,
                    txlog_offset=md.offset,
                )
            )
        return out

    async def announce(self, topic: str, key: bytes, value: bytes) -> None:
        """Write one record in its own transaction: proves this producer is not fenced."""
        producer = await self._usable_producer()
        async with self._transaction(producer, "announcement failed"):
            await producer.send_and_wait(topic, key=key, value=value)

    async def _abort(self, producer: AIOKafkaProducer, cause: BaseException) -> None:
        if isinstance(cause, ProducerFenced):
            return  # a fenced producer cannot abort; the successor's epoch ended its transaction
        try:
            await producer.abort_transaction()
        except Exception as exc:
            # Unusable: the next commit starts a fresh producer.
            log.warning("abort failed (%s: %s); dropping the producer", type(exc).__name__, exc)
            await self._drop(producer)

    async def _drop(self, producer: AIOKafkaProducer) -> None:
        """Stop `producer` if it is still the current one (a failure may have replaced it)."""
        replaced = self._producer is not producer
        if replaced:
            return
        self._producer = None
        try:
            await producer.stop()
        except Exception as exc:  # broken already: nothing more to release
            log.debug("stopping a failed producer: %s", exc)


def _end_spans(spans: Sequence[Span | None], error: BaseException | None) -> None:
    for span in spans:
        if span is None:
            continue
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, f"nothing was written: {type(error).__name__}: {error}"))
        span.end()
