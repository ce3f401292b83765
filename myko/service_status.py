"""myko.v1.ServiceStatus: each service instance's report about itself, an entity like any other.

Every App declares the entity and the query `myko.v1.ServiceStatuses` (all of
them, by service then instance id), so the UI's System page is a LiveQuery
over the same machinery as every other view. Each gRPC service's entry point
runs a `StatusReporter`, which writes the instance's status every
MYKO_STATUS_INTERVAL_MS, when its health changes, and once more (STOPPED)
when it shuts down cleanly, through a `StatusSink`:

- `KafkaStatusSink` (command_svc, repo_svc, saga_svc): the record itself, by
  an idempotent producer (key = instance id, on the compacted topic), rather
  than a command to command_svc, so an instance that cannot reach command_svc
  still reports (the System page shows command_svc as the one that went
  quiet, not every service at once), and heartbeats do not fill command_svc's
  tx log, whose window is for clients' retries.
- `RepoStatusSink` (query_svc, report_svc, which have no Kafka access): hands
  the status to repo_svc (RepoService/ReportStatus), which checks it and
  writes it the same way (myko/status_relay.py).

docs/observability.md has the rest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import grpc
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from google.protobuf import timestamp_pb2
from reactivex import Observable

from myko import catalogue
from myko.entities import EntityRegistry
from myko.errors import MykoError
from myko.events import set_event, to_record
from myko.keepalive import KeepalivePolicy
from myko.lifecycle import Lifecycle, cancel_and_wait
from myko.metrics import Metrics
from myko.repo import Store
from myko.retry import Backoff
from myko.settings import KafkaSettings, ServerSettings
from myko.tls import Transport
from myko.topics import ensure_topics, entity_topics
from myko.v1 import item_pb2, repo_pb2, system_pb2

if TYPE_CHECKING:
    from myko.app import Handlers

log = logging.getLogger(__name__)

ServiceStatus = system_pb2.ServiceStatus
# Queries every App declares itself (an App included in another brings them again).
FRAMEWORK_QUERIES = frozenset({str(system_pb2.ServiceStatuses.DESCRIPTOR.full_name)})
# The last report, written on a clean stop, waits this long for the broker at most.
FINAL_REPORT_TIMEOUT_S = 3.0
# After a report that was not written, the next attempt (sooner when the interval is shorter).
RETRY_S = 5.0


def declare(handlers: Handlers) -> None:
    """The entity and its query, which App declares for every application."""
    handlers.entity(ServiceStatus)
    handlers.query(system_pb2.ServiceStatuses)(service_statuses)


def _by_service(s: system_pb2.ServiceStatus) -> tuple[str, str]:
    return (s.service, s.item.id)


def service_statuses(q: system_pb2.ServiceStatuses, repos: Store) -> Observable[list[ServiceStatus]]:
    return repos.of(ServiceStatus).watch(order_by=_by_service)


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


# What a sink raises when a status was not written (the reporter tries again later).
NOT_WRITTEN = (TimeoutError, KafkaError, OSError, grpc.RpcError, MykoError)


class StatusSink(Protocol):
    """Where a reporter's statuses go."""

    async def open(self) -> None:
        """Get ready to write, retrying as long as it takes (the reporter cancels it on stop)."""

    async def write(self, status: system_pb2.ServiceStatus, *, timeout_s: float) -> None:
        """Write one status within `timeout_s`; one of NOT_WRITTEN otherwise."""

    async def close(self) -> None: ...


class KafkaStatusSink:
    """Writes statuses to the ServiceStatus topic: the services with Kafka access, and repo_svc's relay."""

    def __init__(self, kafka: KafkaSettings, *, client_id: str) -> None:
        self._kafka = kafka
        self._client_id = client_id
        self.topic = kafka.topic_prefix + str(ServiceStatus.DESCRIPTOR.full_name)
        self._producer: AIOKafkaProducer | None = None

    async def open(self) -> None:
        """Create the topic if needed and start the producer, retrying until the broker answers."""
        kafka = self._kafka
        backoff = Backoff(initial_s=0.5, max_s=30.0)
        registry = EntityRegistry()
        registry.add(ServiceStatus)
        while True:
            producer = AIOKafkaProducer(
                **kafka.client_args(),
                client_id=self._client_id,
                acks="all",
                enable_idempotence=True,
                request_timeout_ms=kafka.request_timeout_ms,
            )
            try:
                await ensure_topics(kafka, entity_topics(kafka, registry))
                await producer.start()
                self._producer = producer
                return
            except Exception as exc:  # Unavailable, KafkaError, OSError: all mean "not yet"
                await producer.stop()
                log.info("status reports wait for Kafka: %s", exc)
                await asyncio.sleep(backoff.next())

    async def write(
        self, status: system_pb2.ServiceStatus, *, timeout_s: float, ts: timestamp_pb2.Timestamp | None = None
    ) -> None:
        producer = self._producer
        if producer is None:
            raise OSError("the status producer is not started")
        # No tx: no command caused it (docs/observability.md). Its source is the instance.
        event = set_event(status, tx="", ts=status.reported_at if ts is None else ts, source=status.item.id)
        record = to_record(event, self.topic)
        async with asyncio.timeout(timeout_s):
            await producer.send_and_wait(
                record.topic, key=record.key, value=record.value, headers=record.headers
            )

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


class RepoStatusSink:
    """Hands statuses to repo_svc (RepoService/ReportStatus): query_svc and report_svc have no Kafka access."""

    def __init__(self, repo_addr: str, transport: Transport, *, keepalive: KeepalivePolicy) -> None:
        self._addr = repo_addr
        self._transport = transport
        self._keepalive = keepalive
        self._channel: grpc.aio.Channel | None = None
        self._call: grpc.aio.UnaryUnaryMultiCallable[Any, Any] | None = None

    async def open(self) -> None:
        # The channel connects on the first call, and again after repo_svc restarts.
        self._channel = self._transport.channel(
            self._addr,
            service=catalogue.REPO.name,
            internal=True,
            options=self._keepalive.client_options(),
        )
        self._call = self._channel.unary_unary(
            "/myko.v1.RepoService/ReportStatus",
            request_serializer=repo_pb2.ReportStatusRequest.SerializeToString,
            response_deserializer=repo_pb2.ReportStatusResponse.FromString,
        )

    async def write(self, status: system_pb2.ServiceStatus, *, timeout_s: float) -> None:
        if self._call is None:
            raise OSError("the status channel is not open")
        await self._call(repo_pb2.ReportStatusRequest(status=status), timeout=timeout_s)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None
            self._call = None


class StatusReporter(Lifecycle):
    """Writes this instance's ServiceStatus; never holds up or fails the service it reports on."""

    def __init__(
        self,
        settings: ServerSettings,
        sink: StatusSink,
        *,
        metrics: Metrics,
        serving: Callable[[], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._sink = sink
        self._metrics = metrics
        self._serving = serving
        self._clock = clock
        self._interval_s = settings.status_interval_ms / 1000
        self._started_at = clock()
        self._version = 0
        self._type = str(ServiceStatus.DESCRIPTOR.full_name)
        self._opened = False
        self._task: asyncio.Task[None] | None = None
        # What was last written: a change of state is reported at once.
        self._reported: system_pb2.ServiceState | None = None
        self.reports = 0

    def status(self, state: system_pb2.ServiceState) -> system_pb2.ServiceStatus:
        now = self._clock()
        totals = self._metrics.totals()
        self._version += 1
        return system_pb2.ServiceStatus(
            item=item_pb2.MItem(
                id=self._settings.instance_id,
                type=self._type,
                created_at=_timestamp(self._started_at),
                updated_at=_timestamp(now),
                version=self._version,
            ),
            service=self._settings.service,
            state=state,
            reported_at=_timestamp(now),
            interval_ms=self._settings.status_interval_ms,
            started_at=_timestamp(self._started_at),
            lag_records=totals.lag_records,
            subscriptions=totals.subscriptions,
            dead_letters=totals.dead_letters,
            quarantined_records=totals.quarantined_records,
            rss_bytes=totals.rss_bytes,
            version=totals.version,
            leader=totals.leader,
        )

    def _state(self) -> system_pb2.ServiceState:
        return system_pb2.SERVICE_STATE_SERVING if self._serving() else system_pb2.SERVICE_STATE_NOT_SERVING

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="status-reporter")

    async def _run(self) -> None:
        await self._sink.open()
        self._opened = True
        tick = min(1.0, self._interval_s)
        last = float("-inf")
        retry_at = float("-inf")
        while True:
            state = self._state()
            now = time.monotonic()
            due = (state != self._reported or now - last >= self._interval_s) and now >= retry_at
            if due:
                if await self._send(self.status(state), timeout_s=self._interval_s):
                    self._reported = state
                    last = now
                else:
                    # A refusal comes back at once: do not ask again every tick.
                    retry_at = time.monotonic() + min(RETRY_S, self._interval_s)
            await asyncio.sleep(tick)

    async def _send(self, status: system_pb2.ServiceStatus, *, timeout_s: float) -> bool:
        try:
            await self._sink.write(status, timeout_s=timeout_s)
        except NOT_WRITTEN as exc:
            refused = isinstance(exc, grpc.aio.AioRpcError) and exc.code() in _REFUSALS
            # A refusal is a deployment out of step (certificates, versions): said louder.
            log.log(
                logging.WARNING if refused else logging.INFO,
                "status report not written (trying again): %s",
                _reason(exc),
            )
            return False
        self.reports += 1
        return True

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._opened:
            # The last word: a clean stop, not a crash (the UI shows it as stopped, not stale).
            await self._send(self.status(system_pb2.SERVICE_STATE_STOPPED), timeout_s=FINAL_REPORT_TIMEOUT_S)
        self._opened = False
        await self._sink.close()


# Answers from repo_svc that retrying soon will not change.
_REFUSALS = frozenset(
    {
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc) or type(exc).__name__
