"""Sagas against the real broker: cascade delete, auto-create, crash safety, dead letters."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest
from command_proxy import CommandProxy
from conftest import InProcessStack
from kafka_inspect import committed, read_topic, wait_committed_past
from myko_client import items, next_matching, visible
from saga_test_app import FAILURE
from targets.v1 import commands_pb2, entities_pb2, queries_pb2

from myko import catalogue
from myko.app import App, load_app
from myko.dead_letter import H_ATTEMPTS, H_OFFSET, H_REASON, H_SAGA
from myko.local.ports import free_port
from myko.local.procs import ServiceProcess
from myko.saga_service import SagaService
from myko.settings import SagaSettings
from myko.v1 import command_pb2

pytestmark = pytest.mark.kafka

Target = entities_pb2.Target
CASCADE = "cascade.targets.v1.Target.zone_id"
PERIMETER = "zone-perimeter"


def saga_env(stack: InProcessStack, **extra: str) -> dict[str, str]:
    return {
        **stack.env,
        "MYKO_COMMAND_ADDR": f"127.0.0.1:{stack.command.grpc.port}",
        "MYKO_SAGA_PORT": "0",
        "MYKO_SAGA_GROUP_ID": "saga",
        "MYKO_SAGA_MAX_ATTEMPTS": "3",
        "MYKO_SAGA_BACKOFF_INITIAL_MS": "50",
        "MYKO_SAGA_BACKOFF_MAX_MS": "200",
        **extra,
    }


def group_of(env: Mapping[str, str], saga: str) -> str:
    return f"{env['MYKO_TOPIC_PREFIX']}{env['MYKO_SAGA_GROUP_ID']}.{saga}"


@pytest.fixture
async def sagas(stack: InProcessStack, example_app: App) -> AsyncIterator[SagaService]:
    async with asyncio.timeout(60):
        svc = SagaService(SagaSettings.from_env(saga_env(stack)), example_app)
        await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


async def zone_targets(stack: InProcessStack, zone_id: str, count: int) -> list[entities_pb2.Target]:
    """Wait until the zone has exactly `count` targets; return them."""
    stream = stack.clients.watch(queries_pb2.TargetsInZone(zone_id=zone_id))
    try:
        async with asyncio.timeout(20):
            found = await next_matching(stream, lambda r: len(r.items) == count)
    finally:
        stream.cancel()
    return items(found, Target)


def one(result: command_pb2.CommandResult) -> tuple[str, int, int]:
    (event,) = result.events
    return event.id, event.offset.partition, event.offset.offset


async def test_new_zone_gets_its_perimeter_once(stack: InProcessStack, sagas: SagaService) -> None:
    created = await stack.clients.execute(commands_pb2.SetZone(name="north"))
    zone_id, partition, offset = one(created)
    (perimeter,) = await zone_targets(stack, zone_id, 1)
    assert perimeter.name == "perimeter" and list(perimeter.tags) == ["auto"]
    assert perimeter.status == entities_pb2.TARGET_STATUS_ACTIVE

    # An update of the zone (version 2) is not a creation: no second perimeter.
    renamed = await stack.clients.execute(commands_pb2.SetZone(id=zone_id, name="North"))
    _, _, o2 = one(renamed)
    env = sagas.settings.kafka
    zone_topic = f"{env.topic_prefix}targets.v1.Zone"
    bootstrap = env.bootstrap_servers
    await wait_committed_past(
        bootstrap, f"{env.topic_prefix}saga.{PERIMETER}", zone_topic, partition, max(offset, o2)
    )
    records = await read_topic(bootstrap, f"{env.topic_prefix}targets.v1.Target")
    assert [r.key.decode() for r in records] == [perimeter.item.id]


async def test_cascade_delete_happens_once(stack: InProcessStack, sagas: SagaService) -> None:
    kafka = sagas.settings.kafka
    zone = await stack.clients.execute(commands_pb2.SetZone(name="south"))
    zone_id = zone.events[0].id
    (perimeter,) = await zone_targets(stack, zone_id, 1)
    owned = [
        (await stack.clients.execute(commands_pb2.SetTarget(name=n, zone_id=zone_id))).events[0].id
        for n in ("a", "b")
    ]
    outside = (await stack.clients.execute(commands_pb2.SetTarget(name="c"))).events[0].id

    deleted = await stack.clients.execute(commands_pb2.DeleteZone(id=zone_id))
    _, partition, offset = one(deleted)
    assert await zone_targets(stack, zone_id, 0) == []
    await wait_committed_past(
        kafka.bootstrap_servers,
        f"{kafka.topic_prefix}saga.{CASCADE}",
        f"{kafka.topic_prefix}targets.v1.Zone",
        partition,
        offset,
    )

    records = await read_topic(kafka.bootstrap_servers, f"{kafka.topic_prefix}targets.v1.Target")
    deletes = Counter(r.key.decode() for r in records if r.value is None)
    assert deletes == Counter([perimeter.item.id, *owned])
    # The target outside the zone is untouched.
    got = await stack.clients.get(queries_pb2.TargetById(id=outside))
    assert [t.name for t in items(got, Target)] == ["c"]


async def test_killed_before_commit_has_exactly_one_effect(stack: InProcessStack, tmp_path: Path) -> None:
    port = free_port()
    env = saga_env(stack, MYKO_SAGA_PORT=str(port), MYKO_SAGA_TEST_CRASH_AFTER_EXECUTE="1")
    svc = ServiceProcess(
        name="saga", module=catalogue.SAGA.module, env=env, grpc_port=port, log_path=tmp_path / "saga.log"
    )
    kafka_bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    prefix = env["MYKO_TOPIC_PREFIX"]
    try:
        svc.start()
        await asyncio.to_thread(svc.wait_healthy, timeout_s=90)

        created = await stack.clients.execute(commands_pb2.SetZone(name="east"))
        zone_id, partition, offset = one(created)
        # The perimeter command is acknowledged, then the process kills itself
        # before committing the Zone event's offset.
        async with asyncio.timeout(30):
            while True:
                if not svc.running:
                    break
                await asyncio.sleep(0.1)
        assert svc.returncode == -9, svc.log_tail()
        (perimeter,) = await zone_targets(stack, zone_id, 1)
        # The effect is there, the commit is not.
        offsets = await committed(kafka_bootstrap, group_of(env, PERIMETER))
        assert offsets.get((f"{prefix}targets.v1.Zone", partition), 0) <= offset

        # Restarted without the fault: the uncommitted event is delivered again.
        svc.env["MYKO_SAGA_TEST_CRASH_AFTER_EXECUTE"] = "0"
        svc.start()
        await asyncio.to_thread(svc.wait_healthy, timeout_s=90)
        await wait_committed_past(
            kafka_bootstrap,
            group_of(env, PERIMETER),
            f"{prefix}targets.v1.Zone",
            partition,
            offset,
            timeout_s=60,
        )
        assert "fault injection" in svc.log_tail(max_chars=100_000)
    finally:
        await asyncio.to_thread(svc.stop)

    records = await read_topic(kafka_bootstrap, f"{prefix}targets.v1.Target")
    sets = [r for r in records if r.key.decode() == perimeter.item.id]
    assert len(sets) == 1, "the redelivered event must not create the perimeter again"
    assert Target.FromString(sets[0].value).item.version == 1


async def test_failing_saga_is_dead_lettered_while_others_work(stack: InProcessStack) -> None:
    settings = SagaSettings.from_env(saga_env(stack, MYKO_APP="saga_test_app"))
    kafka = settings.kafka
    dead_letter_topic = kafka.topic_prefix + settings.dead_letter_topic
    async with asyncio.timeout(60):
        svc = SagaService(settings, load_app(settings.app_module))
        await svc.start()
    try:
        zones = [
            await stack.clients.execute(commands_pb2.SetZone(name=name)) for name in ("west", "far west")
        ]
        # The working saga keeps creating perimeters.
        for z in zones:
            await zone_targets(stack, z.events[0].id, 1)
        # Both broken sagas moved past both events...
        for z in zones:
            _, partition, offset = one(z)
            for saga in ("always-fails", "emits-invalid"):
                await wait_committed_past(
                    kafka.bootstrap_servers,
                    f"{kafka.topic_prefix}saga.{saga}",
                    f"{kafka.topic_prefix}targets.v1.Zone",
                    partition,
                    offset,
                )
        # ... after writing each event to the dead-letter topic with the reason.
        letters = await read_topic(kafka.bootstrap_servers, dead_letter_topic)
    finally:
        await svc.stop()

    by_saga: dict[str, list[dict[str, bytes]]] = {}
    for r in letters:
        headers = dict(r.headers)
        by_saga.setdefault(headers[H_SAGA].decode(), []).append(headers)
        assert r.key.decode() in {z.events[0].id for z in zones}
        assert entities_pb2.Zone.FromString(r.value).name in ("west", "far west")
        assert headers["myko-op"] == b"SET"
    assert sorted(by_saga) == ["always-fails", "emits-invalid"]
    failed = by_saga["always-fails"]
    assert sorted(int(h[H_OFFSET]) for h in failed) == sorted(one(z)[2] for z in zones)
    for h in failed:
        assert FAILURE in h[H_REASON].decode()
        assert h[H_ATTEMPTS] == b"3"  # MYKO_SAGA_MAX_ATTEMPTS
    # A permanent rejection is not retried.
    for h in by_saga["emits-invalid"]:
        assert "INVALID_ARGUMENT" in h[H_REASON].decode() and "name" in h[H_REASON].decode()
        assert h[H_ATTEMPTS] == b"1"
    assert len(by_saga["emits-invalid"]) == 2


async def test_cascade_sees_targets_written_just_before_the_delete(
    stack: InProcessStack, sagas: SagaService
) -> None:
    zone = await stack.clients.execute(commands_pb2.SetZone(name="busy"))
    zone_id = zone.events[0].id
    await zone_targets(stack, zone_id, 1)
    # Targets and the delete race through command_svc; whatever was accepted before the
    # delete must be cascaded, and nothing can be added after it.
    results = await asyncio.gather(
        *[stack.clients.execute(commands_pb2.SetTarget(name=f"t{i}", zone_id=zone_id)) for i in range(10)],
        stack.clients.execute(commands_pb2.DeleteZone(id=zone_id)),
        return_exceptions=True,
    )
    deleted = results[-1]
    assert isinstance(deleted, command_pb2.CommandResult)
    assert await zone_targets(stack, zone_id, 0) == []
    got = await stack.clients.get(queries_pb2.AllTargets(), at_least=deleted.visible_at)
    assert visible(deleted, got.watermark)
    assert [t for t in items(got, Target) if t.zone_id == zone_id] == []


async def test_unreachable_command_svc_is_waited_for_not_dead_lettered(
    stack: InProcessStack, example_app: App
) -> None:
    port = free_port()
    settings = SagaSettings.from_env(saga_env(stack, MYKO_COMMAND_ADDR=f"127.0.0.1:{port}"))
    kafka = settings.kafka
    async with asyncio.timeout(60), SagaService(settings, example_app):
        created = await stack.clients.execute(commands_pb2.SetZone(name="island"))
        zone_id = created.events[0].id
        # Far longer than MYKO_SAGA_MAX_ATTEMPTS (3) backoffs of 50-200 ms: an
        # outage is waited out, not counted against the event.
        await asyncio.sleep(2.0)
        assert await zone_targets(stack, zone_id, 0) == []
        async with CommandProxy(port=port, upstream=f"127.0.0.1:{stack.command.grpc.port}"):
            (perimeter,) = await zone_targets(stack, zone_id, 1)
            assert perimeter.name == "perimeter"
    assert await read_topic(kafka.bootstrap_servers, kafka.topic_prefix + settings.dead_letter_topic) == []


async def test_two_replicas_share_the_groups_and_act_once(stack: InProcessStack, example_app: App) -> None:
    env = saga_env(stack)
    kafka = SagaSettings.from_env(env).kafka
    replicas = [
        SagaService(SagaSettings.from_env({**env, "MYKO_INSTANCE_ID": f"saga-{n}"}), example_app)
        for n in (1, 2)
    ]
    zones: list[command_pb2.CommandResult] = []
    try:
        async with asyncio.timeout(90):
            await asyncio.gather(*(r.start() for r in replicas))

            def perimeter_partitions(r: SagaService) -> set[int]:
                (runner,) = [x for x in r.runners if x.name == PERIMETER]
                return {tp.partition for tp in runner.assignment}

            # Both replicas joined: the 3 partitions are split between them.
            while True:
                split = [perimeter_partitions(r) for r in replicas]
                if all(split) and sorted(p for s in split for p in s) == [0, 1, 2]:
                    break
                await asyncio.sleep(0.1)
            for i in range(6):
                zones.append(await stack.clients.execute(commands_pb2.SetZone(name=f"z{i}")))
            # One replica leaves mid-stream; the other takes over its partitions.
            await replicas[1].stop()
            for i in range(6, 9):
                zones.append(await stack.clients.execute(commands_pb2.SetZone(name=f"z{i}")))
            for z in zones:
                _, partition, offset = one(z)
                await wait_committed_past(
                    kafka.bootstrap_servers,
                    group_of(env, PERIMETER),
                    f"{kafka.topic_prefix}targets.v1.Zone",
                    partition,
                    offset,
                    timeout_s=60,
                )
    finally:
        for r in replicas:
            await r.stop()
    records = await read_topic(kafka.bootstrap_servers, f"{kafka.topic_prefix}targets.v1.Target")
    owners = Counter(Target.FromString(r.value).zone_id for r in records if r.value is not None)
    assert owners == Counter(z.events[0].id for z in zones), "one perimeter per zone, written once"
