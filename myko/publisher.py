"""Commits several commands' events, and their tx-log records, in one Kafka transaction.

Group commit: the command writer hands over every command validated since the
last commit, so throughput grows with concurrency while each command still
lands all-or-nothing. A fixed transactional id per replica fences a zombie
predecessor after a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, ProducerFenced

from myko.errors import Unavailable
from myko.events import to_record
from myko.settings import KafkaSettings
from myko.txlog import TxLog
from myko.v1 import command_pb2, item_pb2
from myko.watermark import Watermark

log = logging.getLogger(__name__)


@dataclass
class Proposal:
    """One command's outcome, ready to be written."""

    tx: str
    digest: bytes
    command_type: str
    events: list[item_pb2.Event]


class FencedError(Exception):
    """Another process took over this transactional id; this one must stop writing."""


class TransactionalPublisher:
    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        transactional_id: str,
        topic_of: Callable[[str], str],
        txlog: TxLog,
        max_request_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self._kafka = kafka
        self._transactional_id = transactional_id
        self._topic_of = topic_of
        self._txlog = txlog
        self._max_request_bytes = max_request_bytes
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._kafka.bootstrap_servers,
            transactional_id=self._transactional_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=0,
            max_request_size=self._max_request_bytes,
            request_timeout_ms=self._kafka.request_timeout_ms,
            transaction_timeout_ms=60_000,
        )
        try:
            await producer.start()
        except (KafkaError, OSError) as exc:
            await producer.stop()
            raise Unavailable(f"cannot start producer: {exc}") from exc
        self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def commit(self, proposals: Sequence[Proposal]) -> list[command_pb2.CommandResult]:
        """Write everything in one transaction; on failure nothing is visible."""
        if self._producer is None:
            await self.start()  # a previous failure dropped the producer
        assert self._producer is not None
        producer = self._producer
        try:
            await producer.begin_transaction()
            try:
                results = await self._send_all(producer, proposals)
                await producer.commit_transaction()
            except BaseException:
                await self._abort(producer)
                raise
        except ProducerFenced as exc:
            raise FencedError(str(exc)) from exc
        except (TimeoutError, KafkaError, OSError) as exc:
            raise Unavailable(f"broker unavailable, nothing was written: {exc}") from exc
        return results

    async def _send_all(
        self, producer: AIOKafkaProducer, proposals: Sequence[Proposal]
    ) -> list[command_pb2.CommandResult]:
        pending = []
        for p in proposals:
            futs = []
            for ev in p.events:
                rec = to_record(ev, self._topic_of(ev.type))
                futs.append(await producer.send(rec.topic, key=rec.key, value=rec.value, headers=rec.headers))
            pending.append(futs)
        results = []
        for p, futs in zip(proposals, pending, strict=True):
            metas = await asyncio.gather(*futs)
            events = []
            for ev, md in zip(p.events, metas, strict=True):
                landed = item_pb2.Event()
                landed.CopyFrom(ev)
                landed.offset.CopyFrom(
                    item_pb2.Offset(topic=md.topic, partition=md.partition, offset=md.offset)
                )
                events.append(landed)
            result = command_pb2.CommandResult(
                tx=p.tx,
                command_type=p.command_type,
                events=events,
                visible_at=Watermark.after(e.offset for e in events).to_proto(),
            )
            rec = self._txlog.record(p.tx, p.digest, result)
            await producer.send(rec.topic, key=rec.key, value=rec.value, headers=rec.headers)
            results.append(result)
        return results

    async def announce(self, topic: str, key: bytes, value: bytes) -> None:
        """Write one record in its own transaction: proves this producer is not fenced."""
        await self.commit_records([(topic, key, value)])

    async def commit_records(self, records: Sequence[tuple[str, bytes, bytes]]) -> None:
        if self._producer is None:
            await self.start()
        assert self._producer is not None
        producer = self._producer
        try:
            async with producer.transaction():
                for topic, key, value in records:
                    await producer.send(topic, key=key, value=value)
        except ProducerFenced as exc:
            raise FencedError(str(exc)) from exc
        except (TimeoutError, KafkaError, OSError) as exc:
            raise Unavailable(f"broker unavailable: {exc}") from exc

    async def _abort(self, producer: AIOKafkaProducer) -> None:
        try:
            await producer.abort_transaction()
        except Exception as exc:  # the producer is unusable: start a fresh one
            log.warning("abort failed (%s); restarting the producer", exc)
            await self.stop()
            try:
                await self.start()
            except Unavailable:
                log.warning("producer restart failed; will retry on the next commit")
