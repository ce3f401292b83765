"""A CommandBus over the in-memory adapters: the command core without a broker.

    core = MemoryCore(app)
    async with core:
        result = await core.execute(SetNote(text="hi"), tx=str(uuid.uuid4()))

Wired like command_svc (store, tracker, tx log, feed, fence, publisher, bus),
but over a MemoryLog: fast and deterministic, for unit tests of the core and of
an application's command handlers. Several MemoryCores over one MemoryLog act
like restarted (or concurrent) command_svc processes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf import any_pb2
from google.protobuf.message import Message

from myko.app import App
from myko.command_bus import CommandBus
from myko.conflicts import ChangeTracker
from myko.lifecycle import Lifecycle
from myko.memory_feed import MemoryFeed
from myko.memory_log import MemoryLog
from myko.memory_publisher import MemoryPublisher
from myko.quarantine import Quarantine
from myko.repo import Store
from myko.store_fence import StoreFence
from myko.topics import TX_LOG
from myko.txlog import TxLog, TxLogLimits
from myko.v1 import command_pb2
from myko.watermark import Watermark


class MemoryCore(Lifecycle):
    def __init__(
        self,
        app: App,
        *,
        log: MemoryLog | None = None,
        limits: TxLogLimits | None = None,
        max_result_bytes: int = 4 * 1024 * 1024,
        max_command_bytes: int = 512 * 1024,
        conflict_retries: int = 8,
        source: str = "memory-core",
    ) -> None:
        self.app = app
        self.log = log or MemoryLog()
        # Counts (and logs) records it cannot decode, as command_svc does; copies none.
        self.quarantine = Quarantine("memory-core")
        self.store = Store(app.entities, quarantine=self.quarantine)
        self.tracker = ChangeTracker(self.store)
        self.txlog_topic = TX_LOG
        self.log.create(self.txlog_topic, 1)
        limits = limits or TxLogLimits(max_age_ms=7 * 24 * 3600 * 1000, max_txs=100_000)
        self.txlog = TxLog(self.txlog_topic, limits, self.log, clock_ms=self.log.clock_ms)
        self.feed = MemoryFeed(
            self.log,
            [*self.store.topics, self.txlog_topic],
            self._on_batch,
            windows={self.txlog_topic: limits.read_window()},
        )
        self.fence = StoreFence(self.feed, self.store)
        self.publisher = MemoryPublisher(
            self.log,
            topic_of=lambda type_name: type_name,
            txlog_topic=self.txlog_topic,
            max_result_bytes=max_result_bytes,
        )
        self.bus = CommandBus(
            app=app,
            store=self.store,
            tracker=self.tracker,
            txlog=self.txlog,
            publisher=self.publisher,
            fence=self.fence,
            source=source,
            max_command_bytes=max_command_bytes,
            conflict_retries=conflict_retries,
        )
        self.on_batch: list[Callable[[Sequence[Any]], None]] = []

    def _on_batch(self, records: Sequence[Any], watermark: Watermark) -> None:
        self.txlog.apply_records(records, self.quarantine)
        self.store.apply_records(records, watermark)
        for hook in self.on_batch:
            hook(records)

    async def start(self) -> None:
        await self.feed.start()
        await self.feed.wait_caught_up()
        await self.fence.sync()
        self.bus.start()

    async def stop(self) -> None:
        await self.bus.stop()
        await self.feed.stop()

    async def execute(self, command: Message, *, tx: str | None = None) -> command_pb2.CommandResult:
        return await self.bus.execute(request(command, tx=tx))


def request(command: Message, *, tx: str | None = None) -> command_pb2.CommandRequest:
    """A CommandRequest as a client sends it (deterministic bytes, fresh tx unless given)."""
    packed = any_pb2.Any()
    packed.Pack(command, deterministic=True)
    return command_pb2.CommandRequest(tx=tx or str(uuid.uuid4()), command=packed)
