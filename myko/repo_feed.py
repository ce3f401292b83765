"""Mirrors repo_svc's state into a local Store over RepoService/Subscribe.

query_svc and report_svc evaluate their handlers over this mirror. After a
disconnect the feed reconnects with backoff and replaces the mirror by the new
snapshot; live streams see only the differences, never a wrong intermediate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from itertools import repeat

import grpc

from myko import catalogue
from myko.collector_hold import CollectorHold
from myko.keepalive import KeepalivePolicy
from myko.lifecycle import cancel_and_wait
from myko.repo import Store
from myko.repo_snapshot import TypeSnapshot
from myko.retry import Backoff
from myko.settings import TlsSettings
from myko.tls import Transport
from myko.tracing import Tracing
from myko.v1 import item_pb2, repo_pb2
from myko.watermark import Watermark

log = logging.getLogger(__name__)

OnReady = Callable[[bool], Awaitable[None]]


class RepoFeed:
    def __init__(
        self,
        *,
        repo_addr: str,
        store: Store,
        on_ready: OnReady | None = None,
        keepalive: KeepalivePolicy | None = None,
        transport: Transport | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._addr = repo_addr
        # Plaintext unless TLS is on; then this service's certificate opens RepoService.
        self._transport = transport or Transport(TlsSettings())
        self._tracing = tracing or Tracing.off()
        self._store = store
        self._on_ready = on_ready
        self._keepalive = keepalive or KeepalivePolicy()
        # Times the feed (re)connected and took a full snapshot; 1 while nothing dropped.
        self.snapshots = 0
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="repo-feed")

    async def wait_ready(self, *, timeout_s: float | None = None) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout_s)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _set_ready(self, ready: bool) -> None:
        if ready == self._ready.is_set():
            return
        if ready:
            self._ready.set()
        else:
            self._ready.clear()
        if self._on_ready is not None:
            await self._on_ready(ready)

    async def _run(self) -> None:
        backoff = Backoff(initial_s=0.1, max_s=5.0)
        while True:
            try:
                async with self._transport.channel(
                    self._addr,
                    service=catalogue.REPO.name,
                    internal=True,
                    options=[
                        ("grpc.max_receive_message_length", 256 * 1024 * 1024),
                        *self._keepalive.client_options(),
                    ],
                ) as channel:
                    stub = channel.unary_stream(
                        "/myko.v1.RepoService/Subscribe",
                        request_serializer=repo_pb2.RepoSubscribeRequest.SerializeToString,
                        response_deserializer=repo_pb2.RepoChange.FromString,
                    )
                    # A mirror without events takes the snapshot as columns (no Event per entity).
                    request = repo_pb2.RepoSubscribeRequest(snapshot_columns=not self._store.keeps_events)
                    await self._follow(stub(request, wait_for_ready=True), backoff)
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                log.warning("repo feed from %s lost: %s", self._addr, exc.code().name)
            except Exception:
                log.exception("repo feed failed")
            await self._set_ready(False)
            await asyncio.sleep(backoff.next())

    async def _follow(
        self, call: grpc.aio.UnaryStreamCall[object, repo_pb2.RepoChange], backoff: Backoff
    ) -> None:
        snapshot = SnapshotGather()
        # A snapshot of many entities is a bulk load: kept from the collector's scans until applied.
        collector = CollectorHold()
        try:
            async for change in call:
                if change.snapshot:
                    snapshot.add(change)
                    collector.hold()
                    if change.snapshot_complete:
                        watermark = Watermark.from_proto(change.watermark)
                        if not watermark.covers(self._store.watermark.positions):
                            # A repo replica behind what this mirror already showed:
                            # resetting to it would take live results back in time.
                            log.warning("repo %s is behind this mirror (%s); retrying", self._addr, watermark)
                            return
                        snapshot.load_into(self._store, watermark)
                        collector.release()
                        self.snapshots += 1
                        snapshot = SnapshotGather()
                        backoff.reset()
                        await self._set_ready(True)
                    continue
                # Emissions made while this batch applies link to the commands it carries.
                with self._tracing.applying(change.traceparents):
                    self._store.apply_events(change.events, Watermark.from_proto(change.watermark))
        finally:
            collector.release()


class SnapshotGather:
    """The parts of one snapshot as they arrive: columns per entity type (from a
    repo_svc asked for columns) or events (from one that predates them)."""

    def __init__(self) -> None:
        self.events: list[item_pb2.Event] = []
        self.columns: dict[str, TypeSnapshot] = {}
        self._topics: dict[str, str] = {}  # one str per topic, not one per position

    def add(self, change: repo_pb2.RepoChange) -> None:
        self.events.extend(change.events)
        for part in change.columns:
            into = self.columns.get(part.type)
            if into is None:
                into = self.columns[part.type] = TypeSnapshot([], [], [])
            topic = self._topics.setdefault(part.topic, part.topic)
            into.ids += part.ids
            into.values += part.values
            into.positions += zip(repeat(topic), part.partitions, part.offsets)

    def load_into(self, store: Store, watermark: Watermark) -> None:
        """Reset `store` to this snapshot."""
        if self.events or not self.columns:
            store.reset(self.events, watermark)
        else:
            store.load_snapshot(self.columns, watermark)
