"""myko.v1.ServiceStatus: what each instance reports about itself, read as a live query (real broker).

command_svc, repo_svc and saga_svc write their own; query_svc and report_svc,
which have no Kafka access, hand theirs to repo_svc (RepoService/ReportStatus),
which checks them first.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import grpc
from conftest import InProcessStack
from myko_client import items, next_matching

from myko.live_service import LiveService
from myko.metrics import Metrics
from myko.service_status import KafkaStatusSink, RepoStatusSink, StatusReporter
from myko.settings import CommandSettings, KafkaServiceSettings, RepoSettings
from myko.v1 import repo_pb2, system_pb2


def kafka_reporter(
    settings: KafkaServiceSettings, metrics: Metrics, serving: Callable[[], bool]
) -> StatusReporter:
    """What the entry point runs for command_svc, repo_svc and saga_svc: writes to Kafka itself."""
    sink = KafkaStatusSink(settings.kafka, client_id=f"{settings.instance_id}.status")
    return StatusReporter(settings, sink, metrics=metrics, serving=serving)


def live_reporter(service: LiveService, instance_id: str, interval_ms: int) -> StatusReporter:
    """What the entry point runs for query_svc / report_svc: reports through repo_svc."""
    settings = dataclasses.replace(service.settings, instance_id=instance_id, status_interval_ms=interval_ms)
    sink = RepoStatusSink(settings.repo_addr, service.transport, keepalive=settings.keepalive)
    return StatusReporter(settings, sink, metrics=service.metrics, serving=lambda: service.grpc.serving)


def by_id(result: object) -> dict[str, system_pb2.ServiceStatus]:
    return {s.item.id: s for s in items(result, system_pb2.ServiceStatus)}  # type: ignore[arg-type]


async def test_instances_report_and_a_clean_stop_is_their_last_word(stack: InProcessStack) -> None:
    env = {**stack.env, "MYKO_STATUS_INTERVAL_MS": "1000"}
    repo_settings = dataclasses.replace(RepoSettings.from_env(env), instance_id="repo-a")
    command_settings = dataclasses.replace(CommandSettings.from_env(env), instance_id="command-a")
    repo = kafka_reporter(repo_settings, stack.repo.metrics, lambda: stack.repo.grpc.serving)
    command = kafka_reporter(command_settings, stack.command.metrics, lambda: stack.command.grpc.serving)
    watch = stack.clients.watch(system_pb2.ServiceStatuses())
    try:
        await repo.start()
        await command.start()
        async with asyncio.timeout(60):
            seen = by_id(await next_matching(watch, lambda r: {"repo-a", "command-a"} <= set(by_id(r))))
        assert [
            s.service
            for s in items(await stack.clients.get(system_pb2.ServiceStatuses()), system_pb2.ServiceStatus)
        ] == [
            "command",
            "repo",
        ]
        assert seen["command-a"].state == system_pb2.SERVICE_STATE_SERVING
        assert seen["command-a"].leader
        assert seen["repo-a"].interval_ms == 1000
        assert seen["repo-a"].lag_records == 0
        assert seen["repo-a"].version
        first = seen["repo-a"].reported_at.ToNanoseconds()
        # It keeps reporting: a newer report arrives within a few intervals.
        async with asyncio.timeout(30):
            await next_matching(watch, lambda r: by_id(r)["repo-a"].reported_at.ToNanoseconds() > first)
        await command.stop()
        async with asyncio.timeout(30):
            last = await next_matching(
                watch, lambda r: by_id(r)["command-a"].state == system_pb2.SERVICE_STATE_STOPPED
            )
        assert by_id(last)["repo-a"].state == system_pb2.SERVICE_STATE_SERVING
    finally:
        watch.cancel()
        await command.stop()
        await repo.stop()
    assert repo.reports >= 2


async def test_a_health_change_is_reported_at_once(stack: InProcessStack) -> None:
    env = {**stack.env, "MYKO_STATUS_INTERVAL_MS": "600000"}
    settings = dataclasses.replace(RepoSettings.from_env(env), instance_id="repo-b")
    serving = True
    reporter = kafka_reporter(settings, stack.repo.metrics, lambda: serving)
    watch = stack.clients.watch(system_pb2.ServiceStatuses())
    try:
        await reporter.start()
        async with asyncio.timeout(60):
            await next_matching(watch, lambda r: "repo-b" in by_id(r))
        serving = False  # e.g. a rewritten topic: the ten-minute interval does not hold it back
        async with asyncio.timeout(15):
            await next_matching(
                watch, lambda r: by_id(r)["repo-b"].state == system_pb2.SERVICE_STATE_NOT_SERVING
            )
    finally:
        watch.cancel()
        await reporter.stop()


async def test_a_reporter_without_a_broker_never_holds_up_its_service() -> None:
    settings = dataclasses.replace(
        RepoSettings.from_env({"MYKO_APP": "targets", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}),
        instance_id="nowhere",
    )
    reporter = kafka_reporter(settings, Metrics(), lambda: True)
    async with asyncio.timeout(5):
        await reporter.start()
        await asyncio.sleep(0.5)
        await reporter.stop()
    assert reporter.reports == 0


async def test_query_and_report_report_through_repo_svc_without_kafka_access(stack: InProcessStack) -> None:
    query = live_reporter(stack.query, "query-a", 1000)
    report = live_reporter(stack.report, "report-a", 1000)
    watch = stack.clients.watch(system_pb2.ServiceStatuses())
    try:
        await query.start()
        await report.start()
        async with asyncio.timeout(60):
            seen = by_id(
                await next_matching(
                    # The watch itself is one of query_svc's live subscriptions.
                    watch,
                    lambda r: (
                        {"query-a", "report-a"} <= set(by_id(r)) and by_id(r)["query-a"].subscriptions >= 1
                    ),
                )
            )
        assert seen["query-a"].service == "query" and seen["report-a"].service == "report"
        assert seen["query-a"].state == seen["report-a"].state == system_pb2.SERVICE_STATE_SERVING
        assert seen["report-a"].interval_ms == 1000 and seen["report-a"].version
        first = seen["report-a"].reported_at.ToNanoseconds()
        # The same cadence as any other reporter: a newer report within a few intervals.
        async with asyncio.timeout(30):
            await next_matching(watch, lambda r: by_id(r)["report-a"].reported_at.ToNanoseconds() > first)
        await report.stop()
        async with asyncio.timeout(30):
            last = await next_matching(
                watch, lambda r: by_id(r)["report-a"].state == system_pb2.SERVICE_STATE_STOPPED
            )
        assert by_id(last)["query-a"].state == system_pb2.SERVICE_STATE_SERVING
    finally:
        watch.cancel()
        await report.stop()
        await query.stop()
    assert query.reports >= 1 and stack.repo.status_relay.written >= 3


def _status(**fields: object) -> system_pb2.ServiceStatus:
    status = system_pb2.ServiceStatus(
        service="query", state=system_pb2.SERVICE_STATE_SERVING, interval_ms=10_000, version="0.1.0"
    )
    status.item.id = "query-x"
    status.item.type = "myko.v1.ServiceStatus"
    status.reported_at.FromSeconds(1_800_000_000)
    status.started_at.FromSeconds(1_800_000_000)
    for name, value in fields.items():
        target, _, attr = name.rpartition("__")
        setattr(getattr(status, target) if target else status, attr, value)
    return status


async def _report(stack: InProcessStack, status: system_pb2.ServiceStatus) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.repo.grpc.port}") as channel:
        call = channel.unary_unary(
            "/myko.v1.RepoService/ReportStatus",
            request_serializer=repo_pb2.ReportStatusRequest.SerializeToString,
            response_deserializer=repo_pb2.ReportStatusResponse.FromString,
        )
        try:
            await call(repo_pb2.ReportStatusRequest(status=status), timeout=30)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK


async def test_repo_svc_writes_only_well_formed_statuses_of_live_services(stack: InProcessStack) -> None:
    # Another service's row, written by that service itself.
    env = {**stack.env, "MYKO_STATUS_INTERVAL_MS": "600000"}
    command = kafka_reporter(
        dataclasses.replace(CommandSettings.from_env(env), instance_id="command-b"),
        stack.command.metrics,
        lambda: True,
    )
    watch = stack.clients.watch(system_pb2.ServiceStatuses())
    try:
        await command.start()
        async with asyncio.timeout(60):
            await next_matching(watch, lambda r: "command-b" in by_id(r))
        refused = {
            "a status for command_svc": (_status(service="command"), grpc.StatusCode.PERMISSION_DENIED),
            "another service's instance id": (
                _status(item__id="command-b"),
                grpc.StatusCode.PERMISSION_DENIED,
            ),
            "an id with a blank": (_status(item__id="query x"), grpc.StatusCode.INVALID_ARGUMENT),
            "no id": (_status(item__id=""), grpc.StatusCode.INVALID_ARGUMENT),
            "another entity type": (
                _status(item__type="targets.v1.Target"),
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
            "no state": (_status(state=0), grpc.StatusCode.INVALID_ARGUMENT),
            "no report time": (_status(reported_at__seconds=0), grpc.StatusCode.INVALID_ARGUMENT),
            "a report time past 2262": (
                _status(reported_at__seconds=2**40),
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
            "an interval of 1 ms": (_status(interval_ms=1), grpc.StatusCode.INVALID_ARGUMENT),
            "negative lag": (_status(lag_records=-1), grpc.StatusCode.INVALID_ARGUMENT),
            "a 100 kB version": (_status(version="v" * 100_000), grpc.StatusCode.INVALID_ARGUMENT),
        }
        for what, (status, code) in refused.items():
            assert await _report(stack, status) == code, what
        assert stack.repo.status_relay.written == 0
        # A well-formed one is written and shows up; none of the refused did.
        assert await _report(stack, _status(item__id="query-y")) == grpc.StatusCode.OK
        async with asyncio.timeout(30):
            result = by_id(await next_matching(watch, lambda r: "query-y" in by_id(r)))
        assert set(result) == {"command-b", "query-y"}
        assert result["command-b"].service == "command"
    finally:
        watch.cancel()
        await command.stop()
