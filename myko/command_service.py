"""command_svc: CommandBus/Execute over a local, read-your-own-writes view of every topic."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import grpc

from gen.myko.v1 import command_pb2
from myko.app import App
from myko.command_bus import CommandBus
from myko.conflicts import ChangeTracker
from myko.errors import Unavailable
from myko.publisher import TransactionalPublisher
from myko.reader import TopicReader
from myko.repo import Store
from myko.rpc import Ctx, register_service, unary_method
from myko.server import GrpcServer
from myko.settings import CommandSettings
from myko.topics import ensure_topics, entity_topics, tx_log_topic
from myko.txlog import TxLog

log = logging.getLogger(__name__)


def register_command_bus(server: grpc.aio.Server, service: CommandService) -> None:
    async def execute(req: command_pb2.CommandRequest, ctx: Ctx) -> command_pb2.CommandResult:
        if not service.ready:
            raise Unavailable("command_svc is still catching up")
        return await service.bus.execute(req)

    register_service(
        server, "myko.v1.CommandBus", {"Execute": unary_method(execute, command_pb2.CommandRequest)}
    )


class CommandService:
    def __init__(self, settings: CommandSettings, app: App) -> None:
        self.settings = settings
        self.app = app
        kafka = settings.kafka
        self.store = Store(app.entities, topic_prefix=kafka.topic_prefix)
        self.tracker = ChangeTracker(self.store)
        self._tx_topic = tx_log_topic(kafka, retention_ms=settings.tx_retention_ms)
        self.txlog = TxLog(self._tx_topic.name)
        self.reader = TopicReader(
            kafka, [*self.store.topics, self._tx_topic.name], self._on_batch, client_id=settings.instance_id
        )
        self.publisher = TransactionalPublisher(
            kafka,
            transactional_id=f"myko-command-{kafka.topic_prefix}{settings.instance_id}",
            topic_of=lambda type_name: kafka.topic_prefix + type_name,
            txlog=self.txlog,
            max_request_bytes=settings.max_message_bytes,
        )
        self.bus = CommandBus(
            app=app,
            store=self.store,
            tracker=self.tracker,
            txlog=self.txlog,
            publisher=self.publisher,
            source=settings.instance_id,
            max_command_bytes=settings.max_command_bytes,
            conflict_retries=settings.conflict_retries,
        )
        self.grpc = GrpcServer(
            settings, service_names=["myko.v1.CommandBus"], register=[lambda s: register_command_bus(s, self)]
        )
        self.ready = False

    def _on_batch(self, records: Sequence[Any], watermark: Any) -> None:
        self.txlog.apply_records(records)
        self.store.apply_records(records, watermark)

    async def start(self) -> None:
        kafka = self.settings.kafka
        await ensure_topics(kafka, [*entity_topics(kafka, self.app.entities), self._tx_topic])
        await self.grpc.start()
        # The producer first: starting it fences a zombie predecessor and aborts
        # its open transaction, so the read below sees a settled log.
        await self.publisher.start()
        await self.reader.start()
        await self.reader.wait_caught_up()
        self.bus.start()
        self.ready = True
        await self.grpc.set_serving()
        log.info(
            "command_svc ready: %d entities, %d known txs",
            sum(len(self.store.repo(n)) for n in self.app.entities.names()),
            len(self.txlog),
        )

    async def stop(self) -> None:
        self.ready = False
        await self.grpc.stop()
        await self.bus.stop()
        await self.publisher.stop()
        await self.reader.stop()

    async def __aenter__(self) -> CommandService:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
