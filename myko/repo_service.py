"""repo_svc: reduces every entity topic and serves the state over RepoService.

Subscribe sends a snapshot, then change batches. Each subscriber has a pending
set keyed by entity (latest event wins), so a slow subscriber receives fewer,
merged batches instead of an unbounded queue, and never holds up the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any

import grpc
from google.protobuf import any_pb2

from myko import catalogue
from myko.app import App
from myko.checkpoints import Checkpoints
from myko.errors import InvalidArgument, TopicRewritten, Unavailable, echo
from myko.lifecycle import Lifecycle
from myko.metrics import Metrics
from myko.metrics.rpc import RpcMetrics
from myko.quarantine import Quarantine
from myko.reader import TopicReader
from myko.repo import Store, StoreBatch
from myko.repo_snapshot import FrozenRepo
from myko.rpc import Ctx, register_service, stream_method, unary_method
from myko.server import GrpcServer
from myko.settings import RepoSettings
from myko.status_relay import StatusRelay
from myko.tls import Transport
from myko.topics import ensure_topics, entity_topics, quarantine_topic
from myko.tracing import MAX_LINKS, SPAN_REPO_APPLY, Tracing, applying_batch, traceparents_of
from myko.v1 import item_pb2, repo_pb2
from myko.watermark import Watermark
from myko.wire_format import length_delimited

log = logging.getLogger(__name__)

SNAPSHOT_CHUNK = 500
# Entities per snapshot message in columns (~2 MB for the example's Targets), and at
# most this many bytes of encodings in one (a mirror takes messages of up to 256 MiB).
COLUMNS_CHUNK = 8192
COLUMNS_BYTES = 8 * 1024 * 1024


class _PendingChanges:
    def __init__(self, types: set[str]) -> None:
        self._types = types
        self._events: dict[tuple[str, str], item_pb2.Event] = {}
        self._watermark: Watermark | None = None
        # Traced commands in the merged batches (bounded like a span's links).
        self._traceparents: dict[str, None] = {}
        self.ready = asyncio.Event()

    def on_batch(self, batch: StoreBatch) -> None:
        for ev in batch.events:
            if ev.type in self._types:
                self._events[(ev.type, ev.id)] = ev
        self._watermark = batch.watermark
        traced = applying_batch()
        if traced is not None:
            for tp in traced.traceparents[: MAX_LINKS - len(self._traceparents)]:
                self._traceparents[tp] = None
        self.ready.set()

    def take(self) -> repo_pb2.RepoChange:
        self.ready.clear()
        events = list(self._events.values())
        self._events = {}
        traceparents = list(self._traceparents)
        self._traceparents = {}
        assert self._watermark is not None
        return repo_pb2.RepoChange(
            events=events, watermark=self._watermark.to_proto(), traceparents=traceparents
        )


def snapshot_chunks(store: Store, types: Iterable[str], watermark: item_pb2.Watermark) -> list[bytes]:
    """The snapshot of `types` as encoded RepoChange(snapshot=True, events, watermark)
    messages of up to SNAPSHOT_CHUNK events each (fields 1, 3, 4), written from the
    stored bytes: no Event message is built. Taken whole, before anything is sent."""
    watermark_field = length_delimited(b"\x22", watermark.SerializeToString(deterministic=True))
    chunks: list[bytes] = []
    for name in sorted(types):
        repo = store.repo(name)
        ids = repo.ids()
        for i in range(0, len(ids), SNAPSHOT_CHUNK):
            parts = [b"\x08\x01"]
            if repo.write_events(ids[i : i + SNAPSHOT_CHUNK], parts, b"\x1a"):
                parts.append(watermark_field)
                chunks.append(b"".join(parts))
    return chunks


def snapshot_column_chunks(
    store: Store, types: Iterable[str], watermark: item_pb2.Watermark
) -> Iterator[bytes]:
    """The snapshot of `types` as encoded RepoChange(snapshot=True, columns, watermark)
    messages of up to COLUMNS_CHUNK entities each (what a mirror that keeps no events
    asks for: RepoSubscribeRequest.snapshot_columns): each column is a repeated field
    filled in C, so writing it costs no Python per entity. The state is taken at the
    call (copies of each repo's dicts) and written message by message as the iterator
    is read: the mirror parses the first while later ones are written."""
    frozen = [(name, store.repo(name).frozen()) for name in sorted(types)]
    return _column_chunks(frozen, watermark)


def _column_chunks(frozen: list[tuple[str, FrozenRepo]], watermark: item_pb2.Watermark) -> Iterator[bytes]:
    for name, repo in frozen:
        ids = repo.ids()
        start = 0
        while start < len(ids):
            # Large entities: fewer per message (halved until under COLUMNS_BYTES, or one).
            chunk = ids[start : start + COLUMNS_CHUNK]
            encodings = repo.encodings(chunk)
            while len(chunk) > 1 and sum(map(len, encodings)) > COLUMNS_BYTES:
                chunk, encodings = chunk[: len(chunk) // 2], encodings[: len(chunk) // 2]
            start += len(chunk)
            change = repo_pb2.RepoChange(snapshot=True, watermark=watermark)
            for topic, part, values, partitions, offsets in repo.columns(chunk, encodings):
                change.columns.add(
                    type=name, topic=topic, ids=part, values=values, partitions=partitions, offsets=offsets
                )
            yield change.SerializeToString()


def _types(store: Store, requested: Sequence[str]) -> set[str]:
    known = set(store.entities.names())
    unknown = [t for t in requested if t not in known]
    if unknown:
        named = ", ".join(echo(t) for t in unknown[:5])
        raise InvalidArgument(
            "types", f"{len(unknown)} unknown entity types ({named}); known: {sorted(known)}"
        )
    return set(requested) or known


def register_repo_service(
    server: grpc.aio.Server,
    store: Store,
    caught_up: asyncio.Event,
    transport: Transport,
    relay: StatusRelay,
    metrics: RpcMetrics | None = None,
) -> None:
    # With TLS, the listener took only callers with a certificate from our CA;
    # of those, only the services that mirror the repo may read it.
    callers = catalogue.REPO.callers

    async def subscribe(
        req: repo_pb2.RepoSubscribeRequest, ctx: Ctx
    ) -> AsyncIterator[bytes | repo_pb2.RepoChange]:
        transport.require_caller(ctx, callers)
        types = _types(store, req.types)
        # A snapshot taken before the reader caught up would be partial (empty at
        # first): a mirror reset to it would make live results lose entities.
        await caught_up.wait()
        pending = _PendingChanges(types)
        # Registered before the snapshot is taken, with no await in between:
        # nothing can fall between the snapshot and the first change batch.
        sub = store.subscribe_batches(pending.on_batch)
        try:
            wm = store.watermark.to_proto()
            write = snapshot_column_chunks if req.snapshot_columns else snapshot_chunks
            for chunk in write(store, types, wm):
                yield chunk
            yield repo_pb2.RepoChange(snapshot=True, snapshot_complete=True, watermark=wm)
            while True:
                await pending.ready.wait()
                yield pending.take()
        finally:
            sub.dispose()

    async def get(req: repo_pb2.RepoGetRequest, ctx: Ctx) -> repo_pb2.RepoGetResponse:
        transport.require_caller(ctx, callers)
        if store.entities.get(req.type) is None:
            raise InvalidArgument("type", f"unknown entity type {echo(req.type)}")
        if not caught_up.is_set():
            raise Unavailable("repo_svc is still reading the topics; retry")
        repo = store.repo(req.type)
        ids = list(req.ids) or repo.ids()
        type_url = repo.entity_type.type_url
        items = [any_pb2.Any(type_url=type_url, value=v) for i in ids if (v := repo.encoded(i)) is not None]
        return repo_pb2.RepoGetResponse(items=items, watermark=store.watermark.to_proto())

    methods: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Subscribe": stream_method(
            subscribe,
            repo_pb2.RepoSubscribeRequest,
            name="myko.v1.RepoService/Subscribe",
            metrics=metrics,
        ),
        "Get": unary_method(get, repo_pb2.RepoGetRequest, name="myko.v1.RepoService/Get", metrics=metrics),
        # query_svc's and report_svc's own statuses (myko/status_relay.py).
        "ReportStatus": unary_method(
            relay.report,
            repo_pb2.ReportStatusRequest,
            name="myko.v1.RepoService/ReportStatus",
            metrics=metrics,
        ),
    }
    register_service(server, "myko.v1.RepoService", methods)


class RepoService(Lifecycle):
    """The running repo_svc: reader -> store -> RepoService, SERVING once caught up."""

    def __init__(
        self,
        settings: RepoSettings,
        app: App,
        *,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics = metrics if metrics is not None else Metrics()
        self.tracing = tracing or Tracing.off()
        kafka = settings.kafka
        self._quarantine_topic = quarantine_topic(kafka, settings.quarantine_topic)
        topics = [et.topic(kafka.topic_prefix) for et in app.entities]
        # repo_svc copies the bad records of entity topics; the other readers of
        # those topics only count and log them (docs/quarantine.md).
        self.quarantine = Quarantine.writing(
            "repo_svc",
            kafka,
            self._quarantine_topic.name,
            copy_topics=topics,
            client_id=f"{settings.instance_id}.quarantine",
            log_per_s=settings.bad_record_log_per_s,
        )
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
            service="repo_svc",
            store=self.store,
            kafka=kafka,
        )
        self.reader = TopicReader(
            kafka,
            self.store.topics,
            self._on_batch,
            client_id=settings.instance_id,
            pace=self.quarantine.wait_room,
            on_rewritten=self._rewritten,
            lag=metrics.consumers.consumer("store"),
            resume=None if self.checkpoints is None else self.checkpoints.resume,
        )
        self.caught_up = asyncio.Event()
        self.transport = Transport(settings.tls)
        # query_svc's and report_svc's statuses: they have no Kafka access to write them.
        self.status_relay = StatusRelay(
            kafka,
            client_id=f"{settings.instance_id}.status-relay",
            store=self.store,
            caught_up=self.caught_up,
            transport=self.transport,
        )
        self.grpc = GrpcServer(
            settings,
            service_names=catalogue.REPO.grpc_services,
            register=[
                lambda s: register_repo_service(
                    s, self.store, self.caught_up, self.transport, self.status_relay, metrics.rpc
                )
            ],
            transport=self.transport,
            metrics=metrics,
            tracing=self.tracing,
        )
        self._entities = app.entities

    def _on_batch(self, records: Sequence[Any], watermark: Watermark) -> None:
        if self.checkpoints is not None:
            self.checkpoints.applied(len(records))
        # The history read at start is nobody's request now: only live batches are traced.
        if not self.tracing.enabled or not self.reader.caught_up:
            self.store.apply_records(records, watermark)
            return
        with self.tracing.applying(
            traceparents_of(records),
            span_name=SPAN_REPO_APPLY,
            attributes={"messaging.system": "kafka", "messaging.batch.message_count": len(records)},
        ):
            self.store.apply_records(records, watermark)

    async def _rewritten(self, exc: TopicRewritten) -> None:
        # The state no longer matches the topics: stop saying SERVING so an
        # orchestrator restarts this replica, which then rebuilds from them.
        await self.grpc.set_serving(False)
        log.error("repo_svc is NOT_SERVING: %s", exc.message)

    async def start(self) -> None:
        kafka = self.settings.kafka
        if self.checkpoints is not None:
            self.checkpoints.prefetch()  # read while connecting; judged once the topics are known
        await ensure_topics(kafka, [*entity_topics(kafka, self._entities), self._quarantine_topic])
        await self.quarantine.start()
        await self.grpc.start()
        await self.reader.start()
        await self.reader.wait_caught_up()
        self.caught_up.set()
        await self.grpc.set_serving()
        if self.reader.rewritten is not None:  # noticed while health was being set
            await self.grpc.set_serving(False)
        log.info("repo caught up at %s", self.store.watermark)
        if self.checkpoints is not None:
            self.checkpoints.start_writing(self.reader, name=f"{self.settings.instance_id}-checkpoints")

    async def stop(self) -> None:
        if self.checkpoints is not None:
            await self.checkpoints.stop_writing()
        await self.grpc.stop()
        await self.status_relay.close()
        await self.reader.stop()
        await self.quarantine.stop()
