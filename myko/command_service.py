"""command_svc: CommandBus/Execute over a local, read-your-own-writes view of every topic.

Replicas elect one leader (leader.py); the leader validates and writes, the
others forward Execute to it. A single replica simply leads.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter
from collections.abc import Sequence
from typing import Any

import grpc

from myko import catalogue
from myko.app import App
from myko.authentication import Authenticator
from myko.checkpoints import Checkpoints
from myko.client import Client, channel_options
from myko.command_batch import BatchLimits, CommandBatches
from myko.command_bus import CommandBus
from myko.conflicts import ChangeTracker
from myko.errors import InternalError, MykoError, TopicRewritten, Unavailable, echo
from myko.leader import LEADER_KEY, LEASE_TOPIC, LeaderLease, decode_lease_record
from myko.lifecycle import Lifecycle, cancel_and_wait
from myko.logs import fields, tx_context
from myko.metrics import Metrics
from myko.metrics.rpc import RpcMetrics
from myko.principal import Principal
from myko.publisher import TransactionalPublisher
from myko.quarantine import Quarantine
from myko.reader import TopicReader
from myko.record_fetcher import KafkaRecordFetcher
from myko.repo import Store
from myko.retry import Backoff
from myko.revocation import is_revoked
from myko.rpc import Ctx, register_service, unary_method
from myko.server import GrpcServer
from myko.settings import CommandSettings
from myko.status import CLIENT_CODES, code_of
from myko.store_fence import StoreFence
from myko.tls import Transport
from myko.topics import (
    RECORD_OVERHEAD_BYTES,
    ensure_topics,
    entity_topics,
    lease_topic,
    max_message_bytes_of,
    max_record_bytes,
    quarantine_topic,
    tx_log_topic,
)
from myko.tracing import Tracing
from myko.txlog import TxLog, TxLogLimits
from myko.v1 import command_pb2
from myko.watermark import Watermark

log = logging.getLogger(__name__)

CATCH_UP_TIMEOUT_S = 120.0
# How long a fenced leader waits before taking its writer back (doubling to 10x while it fails).
RETAKE_PAUSE_S = 0.5


def register_command_bus(
    server: grpc.aio.Server, service: CommandService, metrics: RpcMetrics | None = None
) -> None:
    async def admit(ctx: Ctx) -> Principal:
        """The checks every call passes before its commands are looked at."""
        # Through the internal port (TLS): a follower forwarding, or saga_svc;
        # their certificate names them. Public callers have none.
        service.transport.caller(ctx, catalogue.COMMAND.callers)
        # Every replica checks the caller's token itself; a follower forwards it, and the leader checks again.
        principal = await service.auth.from_metadata(ctx.invocation_metadata())
        if service.reader.rewritten is not None:
            raise service.reader.rewritten
        return principal

    async def execute(req: command_pb2.CommandRequest, ctx: Ctx) -> command_pb2.CommandResult:
        principal = await admit(ctx)
        if not service.bus.running:
            return await service.forward(req, ctx)
        with tx_context(req.tx[:64]):
            try:
                return await service.bus.execute(req, principal)
            except MykoError as exc:
                _log_failed(req, exc)
                raise

    async def execute_batch(req: command_pb2.CommandBatchRequest, ctx: Ctx) -> command_pb2.CommandBatchResult:
        # The same checks as Execute, once for the call; each command is then
        # authorised and answered on its own (command_batch.py).
        principal = await admit(ctx)
        if not service.bus.running:
            return await service.forward_batch(req, ctx)
        return await service.batches.execute(req, principal)

    register_service(
        server,
        "myko.v1.CommandBus",
        {
            "Execute": unary_method(
                execute, command_pb2.CommandRequest, name="myko.v1.CommandBus/Execute", metrics=metrics
            ),
            "ExecuteBatch": unary_method(
                execute_batch,
                command_pb2.CommandBatchRequest,
                name="myko.v1.CommandBus/ExecuteBatch",
                metrics=metrics,
            ),
        },
    )


def _log_failed(req: command_pb2.CommandRequest, exc: MykoError) -> None:
    """One line per command that failed here (the leader); a follower only relays the answer."""
    if isinstance(exc, InternalError):
        return  # logged already, with the traceback, under its reference (command_bus._handler_failed)
    code = code_of(exc)
    command_type = req.command.type_url.rsplit("/", 1)[-1]
    log.log(
        logging.INFO if code in CLIENT_CODES else logging.WARNING,
        "command %s failed: %s: %s",
        echo(command_type),
        code.name,
        exc.message,
        extra=fields(command_type=command_type[:200], code=code.name, retriable=exc.retriable),
    )


class CommandService(Lifecycle):
    def __init__(
        self,
        settings: CommandSettings,
        app: App,
        *,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.settings = settings
        self.app = app
        self.metrics = metrics = metrics if metrics is not None else Metrics()
        self.tracing = tracing or Tracing.off()
        kafka = settings.kafka
        self._tx_topic = tx_log_topic(kafka, window_ms=settings.tx_dedupe_window_ms)
        self._lease_topic = lease_topic(kafka, LEASE_TOPIC)
        self._quarantine_topic = quarantine_topic(kafka, settings.quarantine_topic)
        # command_svc copies the bad records of the topics only it reads; those
        # of entity topics are repo_svc's to copy (docs/quarantine.md).
        self.quarantine = Quarantine.writing(
            "command_svc",
            kafka,
            self._quarantine_topic.name,
            copy_topics=[self._tx_topic.name, self._lease_topic.name],
            client_id=f"{settings.instance_id}.quarantine",
            log_per_s=settings.bad_record_log_per_s,
        )
        metrics.quarantine.watch(self.quarantine)
        # Handlers read entities; command_svc never serves events (keep_events: ~half the memory).
        self.store = Store(
            app.entities,
            topic_prefix=kafka.topic_prefix,
            quarantine=self.quarantine,
            keep_events=False,
            cache_entities=settings.repo_cache_entities,
        )
        self.checkpoints = Checkpoints.of(
            settings.checkpoints,
            instance_id=settings.instance_id,
            service="command_svc",
            store=self.store,
            kafka=kafka,
        )
        self.tracker = ChangeTracker(self.store)
        self.auth = Authenticator(settings.auth, revoked=lambda p: is_revoked(self.store, p))
        limits = TxLogLimits(
            max_age_ms=settings.tx_dedupe_window_ms,
            max_txs=settings.tx_dedupe_max_txs,
            result_cache_bytes=settings.tx_result_cache_bytes,
        )
        self.fetcher = KafkaRecordFetcher(
            kafka, client_id=f"{settings.instance_id}-txlog", max_record_bytes=max_record_bytes(kafka)
        )
        self.txlog = TxLog(self._tx_topic.name, limits, self.fetcher)
        self.leader_addr: str | None = None
        self.reader = TopicReader(
            kafka,
            [*self.store.topics, self._tx_topic.name, self._lease_topic.name],
            self._on_batch,
            client_id=settings.instance_id,
            pace=self.quarantine.wait_room,
            on_rewritten=self._rewritten,
            expiring_topics=[self._tx_topic.name],
            # Only the dedupe window of the tx log: start-up does not grow with history.
            windows={self._tx_topic.name: limits.read_window()},
            max_record_bytes=max_record_bytes(kafka),
            lag=metrics.consumers.consumer("store"),
            resume=None if self.checkpoints is None else self.checkpoints.resume,
        )
        self.fence = StoreFence(self.reader, self.store, timeout_s=CATCH_UP_TIMEOUT_S)
        # Shared by every replica: the one that starts it last fences the others.
        self.publisher = TransactionalPublisher(
            kafka,
            transactional_id=f"myko-command-{kafka.topic_prefix}leader",
            topic_of=lambda type_name: kafka.topic_prefix + type_name,
            txlog_topic=self._tx_topic.name,
            max_result_bytes=kafka.max_result_bytes,
            tracing=self.tracing,
        )
        self.bus = CommandBus(
            app=app,
            store=self.store,
            tracker=self.tracker,
            txlog=self.txlog,
            publisher=self.publisher,
            fence=self.fence,
            source=settings.instance_id,
            max_command_bytes=settings.max_command_bytes,
            conflict_retries=settings.conflict_retries,
            metrics=metrics.command,
            tracing=self.tracing,
            on_fenced=self._writer_fenced,
        )
        # Election, deposition and taking the writer back run one at a time.
        self._leadership = asyncio.Lock()
        self._retaking: asyncio.Task[None] | None = None
        self.batches = CommandBatches(
            self.bus,
            BatchLimits(
                max_commands=settings.max_batch_commands,
                max_in_flight=settings.max_batch_in_flight,
                max_result_bytes=settings.max_batch_result_bytes,
            ),
            on_failed=_log_failed,
        )
        metrics.command.watch(txlog_entries=lambda: len(self.txlog), leading=lambda: self.bus.running)
        self.lease = LeaderLease(
            kafka, instance_id=settings.instance_id, on_elected=self._elected, on_deposed=self._deposed
        )
        self.transport = Transport(settings.tls)
        self.grpc = GrpcServer(
            settings,
            service_names=catalogue.COMMAND.grpc_services,
            register=[lambda s: register_command_bus(s, self, metrics.rpc)],
            transport=self.transport,
            internal_listen=settings.internal_listen,
            metrics=metrics,
            tracing=self.tracing,
        )
        # A client of the leader's CommandBus, while another replica leads.
        self._leader: Client | None = None

    @property
    def advertise_addr(self) -> str:
        """Where the other replicas forward to this one while it leads: with TLS, its internal port."""
        if self.settings.advertise_addr:
            return self.settings.advertise_addr
        host = self.settings.host
        if host in ("0.0.0.0", "::", "[::]", ""):
            # In a container the hostname maps to the container's own address
            # (/etc/hosts), which the other replicas on the network can reach.
            name = socket.gethostname()
            try:
                host = socket.gethostbyname(name)
            except OSError:
                host = name
        return f"{host}:{self.grpc.internal_port or self.grpc.port}"

    def _on_batch(self, records: Sequence[Any], watermark: Watermark) -> None:
        # Each reader decodes record by record: a bad record is quarantined alone.
        self.txlog.apply_records(records, self.quarantine)
        for r in records:
            if r.topic == self._lease_topic.name:
                addr = self.quarantine.decode(r, decode_lease_record)
                if addr is not None:
                    self.leader_addr = addr
        self.store.apply_records(records, watermark)
        if self.checkpoints is not None:
            self.checkpoints.applied(len(records))

    async def _rewritten(self, exc: TopicRewritten) -> None:
        # Validating against a state the topics no longer hold could write
        # nonsense: stop writing and say NOT_SERVING until a restart rebuilds it.
        await self.grpc.set_serving(False)
        log.error("command_svc is NOT_SERVING and refuses commands: %s", exc.message)
        await self.bus.stop()

    async def _elected(self) -> None:
        async with self._leadership:
            await self._take_writer()

    async def _take_writer(self) -> None:
        # Starting the producer fences the previous leader and settles its open
        # transaction; the announcement proves we hold the epoch; reading up to
        # the end offsets after that means we validate against every earlier write.
        await self.publisher.start()
        await self.publisher.announce(self._lease_topic.name, LEADER_KEY, self.advertise_addr.encode())
        await self.fence.sync()
        self.bus.start()
        log.info("leading at %s (store at %s)", self.advertise_addr, self.store.watermark)

    async def _deposed(self) -> None:
        async with self._leadership:
            await self.bus.stop()
            await self.publisher.stop()

    def _writer_fenced(self) -> None:
        # Fenced while this replica holds the lease: a zombie predecessor restarted its
        # producer, or the broker ended a transaction that outlived its timeout. The
        # lease holder is the one writer, so it takes the transactional id back; a
        # replica that lost the lease is deposed instead and does not.
        if self._retaking is None or self._retaking.done():
            self._retaking = asyncio.create_task(self._retake(), name="command-retake")

    async def _retake(self) -> None:
        backoff = Backoff(initial_s=RETAKE_PAUSE_S, max_s=10 * RETAKE_PAUSE_S)
        while True:
            # A pause first: a successor's election shows in the lease meanwhile.
            await asyncio.sleep(backoff.next())
            async with self._leadership:
                if not self.lease.leading or self.bus.running:
                    return
                # Whatever waited on the fenced writer fails as UNAVAILABLE (retriable).
                await self.bus.stop()
                log.warning("the writer was fenced while this replica leads; taking it back")
                try:
                    await self._take_writer()
                    return
                except MykoError as exc:
                    log.warning("taking the writer back failed (%s); trying again", exc)

    async def forward(self, req: command_pb2.CommandRequest, ctx: Ctx) -> command_pb2.CommandResult:
        """Send Execute on to the leader; its answer, error and all, is the answer."""
        leader = await self._leader_client()
        # The leader's MykoError reaches the caller with the leader's status and message.
        return await leader.execute_request(req, timeout_s=ctx.time_remaining(), metadata=_authorization(ctx))

    async def forward_batch(
        self, req: command_pb2.CommandBatchRequest, ctx: Ctx
    ) -> command_pb2.CommandBatchResult:
        """Send ExecuteBatch on to the leader, as `forward` does Execute."""
        leader = await self._leader_client()
        return await leader.execute_batch_request(
            req, timeout_s=ctx.time_remaining(), metadata=_authorization(ctx)
        )

    async def _leader_client(self) -> Client:
        addr = self.leader_addr
        if addr is None or addr == self.advertise_addr:
            raise Unavailable("no command leader is serving yet; retry with the same tx")
        leader = self._leader
        if leader is None or leader.command_addr != addr:
            # Replaced before anything awaits (Client.start does not suspend), so
            # concurrent forwards share one client; the old one closes after.
            old, leader = (
                leader,
                Client(
                    command_addr=addr,
                    channel_options=[
                        *channel_options(self.settings.keepalive),
                        *self.transport.channel_options(catalogue.COMMAND.name),
                    ],
                    credentials=self.transport.channel_credentials(internal=True),
                    tracing=self.tracing,
                ),
            )
            self._leader = leader
            await leader.start()
            if old is not None:
                await old.stop()
            if self._leader is not leader:
                # The lease moved again while the old client closed, and the forward
                # that noticed closes this one: calling through it would fail as INTERNAL.
                raise Unavailable("the command leader changed; retry with the same tx")
        return leader

    async def start(self) -> None:
        kafka = self.settings.kafka
        if self.checkpoints is not None:
            self.checkpoints.prefetch()  # read while connecting; judged once the topics are known
        self.auth.log_mode("command_svc")
        await self.auth.warm_up()
        entities = entity_topics(kafka, self.app.entities)
        await ensure_topics(kafka, [*entities, self._tx_topic, self._lease_topic, self._quarantine_topic])
        await self._fit_results_to_topics([t.name for t in [*entities, self._tx_topic]])
        await self.quarantine.start()
        await self.grpc.start()
        await self.reader.start()
        self.publisher.know_partitions(Counter(t for t, _ in self.reader.watermark.positions))
        await self.reader.wait_caught_up()
        if self.checkpoints is not None:
            self.checkpoints.start_writing(self.reader, name=f"{self.settings.instance_id}-checkpoints")
        await self.lease.start()
        # Serve once this replica leads, or knows the live leader to forward to.
        async with asyncio.timeout(CATCH_UP_TIMEOUT_S):
            await self.lease.joined.wait()
            while not self.bus.running and self.leader_addr in (None, self.advertise_addr):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await self.grpc.set_serving()
        if self.reader.rewritten is not None:  # noticed while health was being set
            await self.grpc.set_serving(False)
        log.info(
            "command_svc %s serving: %d txs known, leader %s",
            self.settings.instance_id,
            len(self.txlog),
            self.leader_addr,
        )

    async def _fit_results_to_topics(self, topics: list[str]) -> None:
        """Topics created earlier (or by hand) may accept less than MYKO_MAX_RESULT_BYTES:
        refuse results they would refuse, up front, instead of failing every commit."""
        sizes = await max_message_bytes_of(self.settings.kafka, topics)
        if not sizes:
            return
        topic, smallest = min(sizes.items(), key=lambda kv: kv[1])
        self.publisher.limit_to(
            smallest - RECORD_OVERHEAD_BYTES,
            f"topic {topic} has max.message.bytes={smallest}; raise it to "
            f"{max_record_bytes(self.settings.kafka)} to allow MYKO_MAX_RESULT_BYTES",
        )

    async def stop(self) -> None:
        if self.checkpoints is not None:
            await self.checkpoints.stop_writing()
        await self.grpc.set_serving(False)
        await cancel_and_wait(self._retaking)
        await self.lease.stop()
        await cancel_and_wait(self._retaking)  # a round fenced while deposing may have started one
        await self.grpc.stop()
        await self.bus.stop()
        await self.publisher.stop()
        await self.fetcher.stop()
        await self.reader.stop()
        await self.quarantine.stop()
        if self._leader is not None:
            await self._leader.stop()
        await self.auth.close()


def _authorization(ctx: Ctx) -> tuple[tuple[str, str], ...]:
    """The caller's own authorization metadata, to pass on unchanged."""
    return tuple((str(m[0]), str(m[1])) for m in ctx.invocation_metadata() or () if m[0] == "authorization")
