"""saga_svc: every registered saga, each in its own consumer group, plus gRPC health.

The sagas read state from a Store this service fills itself with a
TopicReader over every entity topic (not from repo_svc): the fence that makes
a saga's reads at least as new as its event asks Kafka for end offsets, and
only a reader of Kafka can be compared with those (store_fence.py). It also
leaves saga_svc depending on Kafka and command_svc alone. With
MYKO_CHECKPOINT_DIR that store starts from its own checkpoint, as repo_svc's
and command_svc's do (docs/checkpoints.md), instead of replaying every topic.
"""

from __future__ import annotations

import asyncio
import logging

from myko import catalogue
from myko.app import App
from myko.checkpoints import Checkpoints
from myko.client import Client, channel_options
from myko.dead_letter import DeadLetters, dead_letter_topic
from myko.errors import ConfigError, TopicRewritten
from myko.lifecycle import Lifecycle
from myko.metrics import Metrics
from myko.quarantine import Quarantine
from myko.reader import Batch, TopicReader
from myko.repo import Store
from myko.saga import AfterExecute, SagaConfig, SagaRunner
from myko.server import GrpcServer
from myko.service_token import ServiceToken
from myko.settings import SagaSettings
from myko.store_fence import StoreFence
from myko.tls import Transport
from myko.topics import ensure_topics, entity_topics
from myko.tracing import Tracing
from myko.watermark import Watermark

log = logging.getLogger(__name__)


class SagaService(Lifecycle):
    """SERVING once its state is caught up and every saga's consumer has joined its group."""

    def __init__(
        self,
        settings: SagaSettings,
        app: App,
        *,
        after_execute: AfterExecute | None = None,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.settings = settings
        self.tracing = tracing or Tracing.off()
        self.app = app
        self.metrics = metrics = metrics if metrics is not None else Metrics()
        kafka = settings.kafka
        # Counts and logs bad records; repo_svc is the one that copies them
        # aside, and each saga dead-letters those of its sources (docs/quarantine.md).
        self.quarantine = Quarantine("saga_svc", log_per_s=settings.bad_record_log_per_s)
        metrics.quarantine.watch(self.quarantine)
        self.store = Store(
            app.entities,
            topic_prefix=kafka.topic_prefix,
            quarantine=self.quarantine,
            cache_entities=settings.repo_cache_entities,
        )
        self.checkpoints = Checkpoints.of(
            settings.checkpoints,
            instance_id=settings.instance_id,
            service="saga_svc",
            store=self.store,
            kafka=kafka,
        )
        self.reader = TopicReader(
            kafka,
            self.store.topics,
            self._on_batch,
            client_id=f"{settings.instance_id}.state",
            on_rewritten=self._rewritten,
            lag=metrics.consumers.consumer("store"),
            resume=None if self.checkpoints is None else self.checkpoints.resume,
        )
        self.fence = StoreFence(self.reader, self.store)
        self.transport = Transport(settings.tls)
        # Sagas act as saga_svc itself (its client credentials), whoever caused the event.
        self.identity: ServiceToken | None = None
        if settings.auth.enabled:
            if settings.credentials is None:
                raise ConfigError("saga_svc needs client credentials when auth is on")
            self.identity = ServiceToken(settings.auth, settings.credentials)
        # With TLS: command_svc's internal port, where this service's certificate
        # identifies it (docs/security.md, "Transport").
        self.commands = Client(
            command_addr=settings.command_addr,
            channel_options=[
                *channel_options(settings.keepalive),
                *self.transport.channel_options(catalogue.COMMAND.name),
            ],
            credentials=self.transport.channel_credentials(internal=True),
            tracing=self.tracing,
            token=self.identity,
        )
        self._dlq_topic = dead_letter_topic(kafka, settings.dead_letter_topic)
        self.dead_letters = DeadLetters(kafka, self._dlq_topic.name, client_id=f"{settings.instance_id}.dlq")
        config = SagaConfig(
            group_id=settings.group_id,
            max_attempts=settings.max_attempts,
            backoff_initial_s=settings.backoff_initial_ms / 1000,
            backoff_max_s=settings.backoff_max_ms / 1000,
        )
        self.runners = [
            SagaRunner(
                reg,
                kafka=kafka,
                entities=app.entities,
                config=config,
                store=self.store,
                fence=self.fence,
                commands=self.commands,
                dead_letters=self.dead_letters,
                quarantine=self.quarantine,
                client_id=settings.instance_id,
                after_execute=after_execute,
                metrics=metrics.sagas.of(reg.name),
                lag=metrics.consumers.consumer(f"saga:{reg.name}"),
                tracing=self.tracing,
            )
            for reg in app.sagas
        ]
        # Health only: saga_svc serves no API of its own.
        self.grpc = GrpcServer(
            settings,
            service_names=catalogue.SAGA.grpc_services,
            register=[],
            transport=self.transport,
            metrics=metrics,
        )

    def _on_batch(self, records: Batch, watermark: Watermark) -> None:
        self.store.apply_records(records, watermark)
        if self.checkpoints is not None:
            self.checkpoints.applied(len(records))

    async def _rewritten(self, exc: TopicRewritten) -> None:
        # A saga's txs derive from event positions: reading a recreated topic
        # would map new events onto old txs. Stop acting until a restart.
        await self.grpc.set_serving(False)
        log.error("saga_svc is NOT_SERVING and has stopped its sagas: %s", exc.message)
        for runner in self.runners:
            await runner.stop()

    async def start(self) -> None:
        kafka = self.settings.kafka
        if self.identity is None:
            log.warning(
                "saga_svc: AUTHENTICATION IS OFF (MYKO_AUTH_DISABLED=true): sagas send commands anonymously"
            )
        if self.checkpoints is not None:
            self.checkpoints.prefetch()  # read while connecting; judged once the topics are known
        await ensure_topics(kafka, [*entity_topics(kafka, self.app.entities), self._dlq_topic])
        await self.grpc.start()
        await self.reader.start()
        await self.reader.wait_caught_up()
        if self.checkpoints is not None:
            self.checkpoints.start_writing(self.reader, name=f"{self.settings.instance_id}-checkpoints")
        await self.dead_letters.start()
        await self.commands.start()
        for runner in self.runners:
            await runner.start()
        await asyncio.gather(*(r.wait_joined() for r in self.runners))
        await self.grpc.set_serving()
        if self.reader.rewritten is not None:  # noticed while starting
            await self._rewritten(self.reader.rewritten)
        log.info(
            "saga_svc ready: %s, commands to %s",
            ", ".join(f"{r.name} (group {r.group_id})" for r in self.runners) or "no sagas",
            self.settings.command_addr,
        )

    async def stop(self) -> None:
        if self.checkpoints is not None:
            await self.checkpoints.stop_writing()
        await self.grpc.stop()
        for runner in self.runners:
            await runner.stop()
        await self.commands.stop()
        if self.identity is not None:
            await self.identity.close()
        await self.dead_letters.stop()
        await self.reader.stop()
