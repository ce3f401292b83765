"""One writer among command_svc replicas: a lease held through a Kafka consumer group.

Every replica joins the group `<prefix>myko-command` on the one-partition lease
topic; the member assigned partition 0 is the leader. On election the leader
starts the shared transactional producer, whose start fences any previous
leader (Kafka bumps the producer epoch and aborts its open transaction), then
waits until its reader has caught up with everything committed before, and
only then validates and writes. Followers forward Execute to the leader, whose
address the leader publishes on the lease topic. Killing or partitioning a
leader costs at most one session timeout of unavailability, never a lost or
doubled write: a zombie's commits fail as fenced, and a retried tx is
deduplicated through the tx log either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata
from aiokafka.errors import KafkaError

from myko.errors import BadRecord, Defect
from myko.events import RawRecord, where
from myko.lifecycle import Lifecycle, cancel_and_wait
from myko.settings import KafkaSettings

log = logging.getLogger(__name__)

LEASE_TOPIC = "myko.command-lease"
LEADER_KEY = b"leader"

Callback = Callable[[], Awaitable[None]]

_MAX_ADDR_CHARS = 300


def decode_lease_record(record: RawRecord) -> str:
    """The leader's HOST:PORT announced by one lease-topic record; raises BadRecord."""
    at = where(record)
    if record.key != LEADER_KEY:
        defect = Defect.NO_KEY if record.key is None else Defect.BAD_KEY
        raise BadRecord(defect, f"{at}: lease record key {record.key!r:.64} is not {LEADER_KEY!r}")
    if record.value is None:
        raise BadRecord(Defect.NO_VALUE, f"{at}: lease record has no address")
    try:
        addr = record.value.decode("ascii")
    except UnicodeDecodeError:
        addr = ""
    host, sep, port = addr.rpartition(":")
    if not (
        sep
        and host
        and len(addr) <= _MAX_ADDR_CHARS
        and addr.isprintable()
        and " " not in addr
        and port.isdigit()
        and 0 < int(port) < 65536
    ):
        raise BadRecord(Defect.BAD_VALUE, f"{at}: lease value {record.value[:64]!r} is not HOST:PORT")
    return addr


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, lease: LeaderLease) -> None:
        self._lease = lease

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if any(tp.partition == 0 for tp in revoked):
            await self._lease._lost()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._lease.held = any(tp.partition == 0 for tp in assigned)
        if self._lease.held:
            await self._lease._won()
        self._lease.joined.set()


def _sticky_assignor(lease: LeaderLease) -> type[AbstractPartitionAssignor]:
    """Keeps the lease with its current holder, so a replica joining never deposes a leader."""

    class StickyLease(AbstractPartitionAssignor):  # type: ignore[misc]
        name = "myko-sticky-lease"
        version = 0

        @classmethod
        def assign(
            cls, cluster: Any, members: Mapping[str, ConsumerProtocolMemberMetadata]
        ) -> dict[str, ConsumerProtocolMemberAssignment]:
            holders = sorted(m for m, meta in members.items() if meta.user_data == b"leader")
            owner = (holders or sorted(members))[0]
            return {
                m: ConsumerProtocolMemberAssignment(
                    cls.version, [(lease.topic, [0])] if m == owner else [], b""
                )
                for m in members
            }

        @classmethod
        def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
            return ConsumerProtocolMemberMetadata(cls.version, list(topics), b"leader" if lease.held else b"")

        @classmethod
        def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
            pass

    return StickyLease


class LeaderLease(Lifecycle):
    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        instance_id: str,
        on_elected: Callback,
        on_deposed: Callback,
        session_timeout_ms: int = 6000,
    ) -> None:
        self.topic = kafka.topic_prefix + LEASE_TOPIC
        self._kafka = kafka
        self._instance_id = instance_id
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self._session_timeout_ms = session_timeout_ms
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.leading = False
        # Survives the revocation that starts every rebalance, so the holder can
        # claim the lease again in its join metadata (see _sticky_assignor).
        self.held = False
        # Set after the first rebalance: from then on, whoever holds partition 0 is alive.
        self.joined = asyncio.Event()

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            **self._kafka.client_args(),
            group_id=f"{self._kafka.topic_prefix}myko-command",
            client_id=self._instance_id,
            enable_auto_commit=False,
            session_timeout_ms=self._session_timeout_ms,
            heartbeat_interval_ms=max(500, self._session_timeout_ms // 4),
            request_timeout_ms=self._kafka.request_timeout_ms,
            partition_assignment_strategy=(_sticky_assignor(self),),
        )
        await consumer.start()
        consumer.subscribe([self.topic], listener=_Listener(self))
        self._consumer = consumer
        self._task = asyncio.create_task(self._poll(), name="command-lease")

    async def _poll(self) -> None:
        # Polling keeps the membership alive; the records themselves are read
        # by every replica's TopicReader, which tracks the leader's address.
        assert self._consumer is not None
        while True:
            try:
                await self._consumer.getmany(timeout_ms=1000)
            except asyncio.CancelledError:
                raise
            except KafkaError as exc:
                log.warning("lease poll failed: %s", exc)
                await asyncio.sleep(0.5)

    async def _won(self) -> None:
        log.info("%s is the command leader", self._instance_id)
        self.leading = True
        try:
            await self._on_elected()
        except Exception:
            log.exception("taking over as leader failed; giving the lease up")
            self.leading = False
            await self._on_deposed()
            raise

    async def _lost(self) -> None:
        if self.leading:
            log.info("%s is no longer the command leader", self._instance_id)
        self.leading = False
        await self._on_deposed()

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._consumer is not None:
            # Leaving the group hands the lease over at once instead of after a timeout.
            await self._consumer.stop()
            self._consumer = None
        if self.leading:
            self.leading = False
            await self._on_deposed()
