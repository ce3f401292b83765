"""myko.v1.ServiceStatus: what each instance reports about itself, read as a live query (real broker)."""

from __future__ import annotations

import asyncio
import dataclasses

from conftest import InProcessStack
from myko_client import items, next_matching

from myko.metrics import Metrics
from myko.service_status import StatusReporter
from myko.settings import CommandSettings, RepoSettings
from myko.v1 import system_pb2


def by_id(result: object) -> dict[str, system_pb2.ServiceStatus]:
    return {s.item.id: s for s in items(result, system_pb2.ServiceStatus)}  # type: ignore[arg-type]


async def test_instances_report_and_a_clean_stop_is_their_last_word(stack: InProcessStack) -> None:
    env = {**stack.env, "MYKO_STATUS_INTERVAL_MS": "1000"}
    repo_settings = dataclasses.replace(RepoSettings.from_env(env), instance_id="repo-a")
    command_settings = dataclasses.replace(CommandSettings.from_env(env), instance_id="command-a")
    repo = StatusReporter(repo_settings, metrics=stack.repo.metrics, serving=lambda: stack.repo.grpc.serving)
    command = StatusReporter(
        command_settings, metrics=stack.command.metrics, serving=lambda: stack.command.grpc.serving
    )
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
    reporter = StatusReporter(settings, metrics=stack.repo.metrics, serving=lambda: serving)
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
    reporter = StatusReporter(settings, metrics=Metrics(), serving=lambda: True)
    async with asyncio.timeout(5):
        await reporter.start()
        await asyncio.sleep(0.5)
        await reporter.stop()
    assert reporter.reports == 0
