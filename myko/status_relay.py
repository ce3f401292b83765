"""repo_svc's side of RepoService/ReportStatus: the statuses of services without Kafka access.

query_svc and report_svc have no Kafka credentials (docs/security.md), so they
hand their myko.v1.ServiceStatus to repo_svc, which they already call, and
repo_svc writes it to the ServiceStatus topic as the services with Kafka
access write theirs (myko/service_status.py). A status is client input here:
it is checked before anything is written (docs/observability.md, "The System
page"), and the writes in flight are bounded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection

from google.protobuf import timestamp_pb2

from myko import catalogue
from myko.errors import InvalidArgument, PermissionDenied, ResourceExhausted, Unavailable, echo
from myko.input_rules import entity_id, text
from myko.repo import Store
from myko.rpc import Ctx
from myko.service_status import NOT_WRITTEN, KafkaStatusSink, ServiceStatus
from myko.settings import KafkaSettings
from myko.tls import Transport
from myko.v1 import repo_pb2, system_pb2

log = logging.getLogger(__name__)

# The services whose statuses repo_svc writes: the ones that mirror it, which
# have no Kafka access; the others write their own.
RELAYED = catalogue.REPO.callers
# A real status is about 150 bytes.
MAX_STATUS_BYTES = 1024
# One live service instance reports every MYKO_STATUS_INTERVAL_MS (10 s); this
# many writes waiting for the brokers at once is far more than a deployment makes.
MAX_IN_FLIGHT = 32
# How long a report waits for the producer to start and for its write.
OPEN_TIMEOUT_S = 5.0
WRITE_TIMEOUT_S = 10.0
# The range MYKO_STATUS_INTERVAL_MS allows (myko/settings.py).
MIN_INTERVAL_MS, MAX_INTERVAL_MS = 1000, 3_600_000
# What a Timestamp may hold and Kafka's int64 nanosecond headers carry (until 2262).
_MAX_SECONDS = (2**63 - 1) // 1_000_000_000
_STATES = (
    system_pb2.SERVICE_STATE_SERVING,
    system_pb2.SERVICE_STATE_NOT_SERVING,
    system_pb2.SERVICE_STATE_STOPPED,
)
_TYPE = str(ServiceStatus.DESCRIPTOR.full_name)


def _timestamp(ts: timestamp_pb2.Timestamp, field: str) -> None:
    if ts.seconds <= 0 or ts.seconds > _MAX_SECONDS or not 0 <= ts.nanos < 1_000_000_000:
        raise InvalidArgument(field, "must be a time between 1970 and 2262")


def check_status(status: system_pb2.ServiceStatus, caller: str | None, *, relayed: Collection[str]) -> None:
    """InvalidArgument or PermissionDenied unless `status` is one a live service may report.

    `caller` is the service identity of a verified client certificate (None
    without TLS): a certificate reports for its own service only.
    """
    if status.service not in relayed:
        raise PermissionDenied(
            f"repo_svc writes the statuses of {', '.join(relayed)} only, not of {echo(status.service)}"
            " (the services with Kafka access write their own)"
        )
    if caller is not None and status.service != caller:
        raise PermissionDenied(f"a {caller} certificate reports for {caller}, not {echo(status.service)}")
    entity_id(status.item.id, "status.item.id")
    if status.item.type != _TYPE:
        raise InvalidArgument("status.item.type", f"must be {_TYPE}, not {echo(status.item.type)}")
    if status.state not in _STATES:
        raise InvalidArgument("status.state", f"{status.state} is not SERVING, NOT_SERVING or STOPPED")
    _timestamp(status.reported_at, "status.reported_at")
    _timestamp(status.started_at, "status.started_at")
    if not MIN_INTERVAL_MS <= status.interval_ms <= MAX_INTERVAL_MS:
        raise InvalidArgument(
            "status.interval_ms", f"{status.interval_ms} is not within {MIN_INTERVAL_MS}..{MAX_INTERVAL_MS}"
        )
    for name in ("lag_records", "subscriptions", "dead_letters", "quarantined_records", "rss_bytes"):
        if getattr(status, name) < 0:
            raise InvalidArgument(f"status.{name}", "must not be negative")
    text(status.version, "status.version", max_chars=64, required=False)


class StatusRelay:
    """Checks the statuses live services hand over and writes them; its producer starts on first use."""

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        client_id: str,
        store: Store,
        caught_up: asyncio.Event,
        transport: Transport,
    ) -> None:
        self._sink = KafkaStatusSink(kafka, client_id=client_id)
        self._store = store
        self._caught_up = caught_up
        self._transport = transport
        self._opening: asyncio.Task[None] | None = None
        self._in_flight = 0
        self.written = 0

    async def report(self, req: repo_pb2.ReportStatusRequest, ctx: Ctx) -> repo_pb2.ReportStatusResponse:
        caller = self._transport.require_caller(ctx, RELAYED)
        size = req.ByteSize()
        if size > MAX_STATUS_BYTES:
            raise InvalidArgument("status", f"is {size} bytes; a status is at most {MAX_STATUS_BYTES}")
        status = req.status
        check_status(status, caller, relayed=RELAYED)
        if not self._caught_up.is_set():
            # Until then the statuses already written are not all known (the check below).
            raise Unavailable("repo_svc is still reading the topics; retry")
        # Ids are the instances' own: one service may not overwrite another's row.
        held = self._store.of(ServiceStatus).get(status.item.id)
        if held is not None and held.service != status.service:
            raise PermissionDenied(
                f"instance id {echo(status.item.id)} reports for {held.service}, not {status.service}"
            )
        if self._in_flight >= MAX_IN_FLIGHT:
            raise ResourceExhausted(f"{MAX_IN_FLIGHT} status reports are being written; retry")
        self._in_flight += 1
        try:
            await self._open()
            await self._write(status)
        finally:
            self._in_flight -= 1
        self.written += 1
        return repo_pb2.ReportStatusResponse()

    async def _write(self, status: system_pb2.ServiceStatus) -> None:
        try:
            now = timestamp_pb2.Timestamp()
            now.FromNanoseconds(time.time_ns())
            # The record's time is this writer's clock; reported_at stays the instance's.
            await self._sink.write(status, timeout_s=WRITE_TIMEOUT_S, ts=now)
        except NOT_WRITTEN as exc:
            log.info("status of %s not written: %s", status.item.id, exc)
            raise Unavailable("repo_svc could not write the status to Kafka; retry") from None

    async def _open(self) -> None:
        if self._opening is None:
            self._opening = asyncio.create_task(self._sink.open(), name="status-relay-open")
        try:
            # Shielded: a caller giving up does not stop the producer starting for the next.
            await asyncio.wait_for(asyncio.shield(self._opening), OPEN_TIMEOUT_S)
        except TimeoutError:
            raise Unavailable("repo_svc's status writer is still connecting to Kafka; retry") from None

    async def close(self) -> None:
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()
            await asyncio.gather(self._opening, return_exceptions=True)
        self._opening = None
        await self._sink.close()
