"""Poison records against the real broker: every consumer keeps the valid records around a bad one.

Another producer writes valid / bad / valid / bad / ... / valid to one
partition of a Myko topic, one bad record of every kind, either plainly or in
one Kafka transaction. Every reader of that topic must apply every valid
record, and the bad ones must reach the quarantine topic with their
coordinates and the reason, copied by the one service that owns that topic's
copies (docs/quarantine.md).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import pytest
from command_proxy import CommandProxy
from conftest import InProcessStack
from kafka_inspect import produce, read_topic, wait_committed_past
from myko_client import Clients, items, next_matching, pack
from poison_records import (
    TARGET,
    ZONE,
    Poison,
    Raw,
    entity_poisons,
    lease_poisons,
    target,
    tx_poisons,
    valid_set,
    valid_tx,
    zone,
)
from targets.v1 import commands_pb2, entities_pb2, queries_pb2

from myko.app import App
from myko.command_service import CommandService
from myko.dead_letter import H_ATTEMPTS, H_OFFSET, H_REASON, H_SAGA
from myko.leader import LEADER_KEY
from myko.local.ports import free_port
from myko.saga_service import SagaService
from myko.settings import CommandSettings, SagaSettings
from myko.v1 import item_pb2

pytestmark = pytest.mark.kafka

Target = entities_pb2.Target
MODES = [pytest.param(False, id="plain"), pytest.param(True, id="in-a-transaction")]

# Headers of a quarantine copy (myko/quarantine.py), spelt out so this file
# also runs against code that has no quarantine.
Q_TOPIC, Q_PARTITION, Q_OFFSET = "myko-q-topic", "myko-q-partition", "myko-q-offset"
Q_DEFECT, Q_REASON, Q_SERVICE, Q_KEY = "myko-q-defect", "myko-q-reason", "myko-q-service", "myko-q-key"


def writable(poisons: list[Poison]) -> list[Poison]:
    return [p for p in poisons if p.on_compacted_topic]


def interleave(valid: Sequence[Raw], poisons: Sequence[Poison]) -> list[Raw]:
    """valid[0], poisons[0], valid[1], poisons[1], ..., valid[-1]."""
    assert len(valid) == len(poisons) + 1
    out: list[Raw] = []
    for v, p in zip(valid, poisons, strict=False):
        out += [v, p.record]
    out.append(valid[-1])
    return out


async def write(env: dict[str, str], topic: str, records: Sequence[Raw], *, transactional: bool) -> list[int]:
    return await produce(
        env["KAFKA_BOOTSTRAP_SERVERS"],
        topic,
        0,
        [(r.key, r.value, list(r.headers)) for r in records],
        transactional=transactional,
    )


async def quarantined(env: dict[str, str], count: int, *, timeout_s: float = 30.0) -> list[Any]:
    """The quarantine topic's records once there are at least `count`."""
    topic = env["MYKO_TOPIC_PREFIX"] + "myko.quarantine"
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                found = await read_topic(env["KAFKA_BOOTSTRAP_SERVERS"], topic, timeout_s=5)
            except TimeoutError:
                found = []
            if len(found) >= count:
                return found
            await asyncio.sleep(0.3)


def check_copies(
    copies: Sequence[Any], topic: str, poisons: Sequence[Poison], offsets: Sequence[int], service: str
) -> None:
    """One copy per bad record (same key for duplicates), with coordinates, defect and reason."""
    by_offset: dict[int, list[dict[str, bytes]]] = {}
    keys: dict[int, set[bytes]] = {}
    for c in copies:
        h = dict(c.headers)
        assert h[Q_TOPIC].decode() == topic and h[Q_PARTITION] == b"0"
        by_offset.setdefault(int(h[Q_OFFSET]), []).append(h)
        keys.setdefault(int(h[Q_OFFSET]), set()).add(c.key)
    assert sorted(by_offset) == sorted(offsets), "exactly the bad records are quarantined"
    for p, off in zip(poisons, offsets, strict=True):
        (h, *_) = by_offset[off]
        assert h[Q_DEFECT].decode() == p.defect, p.name
        assert h[Q_REASON], p.name
        assert h[Q_SERVICE].decode() == service, p.name
        if p.record.key is None:
            assert Q_KEY not in h, p.name
        else:
            assert h[Q_KEY] == p.record.key, p.name
        assert len(keys[off]) == 1, "copies of one record share one key, so compaction keeps one"


async def wait_read(svc: Any, topic: str, past: int, *, timeout_s: float = 30.0) -> None:
    """Until `svc`'s store has read partition 0 of `topic` past offset `past`."""
    await svc.store.wait_for({(topic, 0): past + 1}, timeout_s=timeout_s)


@pytest.mark.parametrize("transactional", MODES)
async def test_entity_topic_bad_records_cost_no_valid_event(
    stack: InProcessStack, topic_prefix: str, transactional: bool
) -> None:
    topic = topic_prefix + TARGET
    poisons = writable(entity_poisons(TARGET))
    valid = [target(f"t-{i:02d}", f"valid {i:02d}") for i in range(len(poisons) + 1)]
    stream = stack.clients.watch(queries_pb2.AllTargets())
    try:
        async with asyncio.timeout(60):
            assert items(await stream.read(), Target) == []
            offsets = await write(
                stack.env,
                topic,
                interleave([valid_set(t) for t in valid], poisons),
                transactional=transactional,
            )
            bad_offsets = offsets[1::2]
            # repo_svc -> query_svc: one emission holds every valid target, and only those.
            result = await next_matching(stream, lambda r: len(r.items) >= len(valid))
            assert sorted(t.item.id for t in items(result, Target)) == [t.item.id for t in valid]
    finally:
        stream.cancel()

    # command_svc's store has them too: a command that reads each one succeeds.
    await wait_read(stack.command, topic, offsets[-1])
    for t in valid:
        done = await stack.clients.execute(commands_pb2.RecordHits(id=t.item.id, count=1))
        assert Target.FromString(done.events[0].entity.value).item.version == 2

    # repo_svc (only) copied each bad record aside; every reader counted it.
    check_copies(await quarantined(stack.env, len(poisons)), topic, poisons, bad_offsets, "repo_svc")
    assert stack.repo.quarantine.stats.total == len(poisons)
    assert stack.command.quarantine.stats.total == len(poisons)
    assert Counter(d for (_, d) in stack.repo.quarantine.stats.records.elements()) == Counter(
        p.defect for p in poisons
    )


async def zone_target_count(clients: Clients, zone_id: str, count: int) -> None:
    stream = clients.watch(queries_pb2.TargetsInZone(zone_id=zone_id))
    try:
        async with asyncio.timeout(30):
            await next_matching(stream, lambda r: len(r.items) == count)
    finally:
        stream.cancel()


@pytest.fixture
async def sagas(stack: InProcessStack, example_app: App) -> AsyncIterator[SagaService]:
    env = {
        **stack.env,
        "MYKO_COMMAND_ADDR": f"127.0.0.1:{stack.command.grpc.port}",
        "MYKO_SAGA_PORT": "0",
        "MYKO_SAGA_GROUP_ID": "saga",
        "MYKO_SAGA_BACKOFF_INITIAL_MS": "50",
        "MYKO_SAGA_BACKOFF_MAX_MS": "200",
    }
    async with asyncio.timeout(60):
        svc = SagaService(SagaSettings.from_env(env), example_app)
        await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


@pytest.mark.parametrize("transactional", MODES)
async def test_sagas_dead_letter_bad_records_and_act_on_the_rest(
    stack: InProcessStack, sagas: SagaService, topic_prefix: str, transactional: bool
) -> None:
    topic = topic_prefix + ZONE
    poisons = writable(entity_poisons(ZONE))
    valid = [zone(f"z-{i:02d}", f"zone {i:02d}") for i in range(len(poisons) + 1)]
    offsets = await write(
        stack.env, topic, interleave([valid_set(z) for z in valid], poisons), transactional=transactional
    )
    bad_offsets = offsets[1::2]
    kafka = sagas.settings.kafka
    names = [r.name for r in sagas.runners]
    assert len(names) == 2  # the perimeter and the cascade, both on Zone events
    # Each saga moved past every record...
    for saga in names:
        await wait_committed_past(
            kafka.bootstrap_servers, f"{topic_prefix}saga.{saga}", topic, 0, offsets[-1], timeout_s=60
        )
    # ... acted on every valid zone (each got its perimeter Target) ...
    for z in valid:
        await zone_target_count(stack.clients, z.item.id, 1)
    # ... and dead-lettered each bad record once, at once (no attempts), with the reason.
    letters = await read_topic(kafka.bootstrap_servers, topic_prefix + sagas.settings.dead_letter_topic)
    for saga in names:
        mine = [dict(r.headers) for r in letters if dict(r.headers)[H_SAGA].decode() == saga]
        assert sorted(int(h[H_OFFSET]) for h in mine) == bad_offsets, saga
        for h, p in zip(sorted(mine, key=lambda h: int(h[H_OFFSET])), poisons, strict=True):
            assert p.defect in h[H_REASON].decode(), (saga, p.name)
            assert h[H_ATTEMPTS] == b"0"
    check_copies(await quarantined(stack.env, len(poisons)), topic, poisons, bad_offsets, "repo_svc")
    # saga_svc's own state reader and both sagas counted each one.
    assert sagas.quarantine.stats.total == 3 * len(poisons)


@pytest.mark.parametrize("transactional", MODES)
async def test_tx_log_dedupes_the_txs_around_bad_records(
    stack: InProcessStack, topic_prefix: str, transactional: bool
) -> None:
    topic = topic_prefix + "myko.tx"
    commands = [commands_pb2.SetTarget(name=f"already done {i}") for i in range(2)]
    txs = [str(uuid.uuid4()) for _ in commands]
    packed = [pack(c) for c in commands]
    poisons = writable(tx_poisons())
    sound = [
        valid_tx(tx, p.type_url, p.value, f"known-{i}")
        for i, (tx, p) in enumerate(zip(txs, packed, strict=True))
    ]
    records = [sound[0], *(p.record for p in poisons), sound[1]]
    offsets = await write(stack.env, topic, records, transactional=transactional)
    await wait_read(stack.command, topic, offsets[-1])

    # Both txs are known: the command is answered from the tx log and not run again.
    for i, (tx, cmd) in enumerate(zip(txs, commands, strict=True)):
        result = await stack.clients.execute(cmd, tx=tx)
        assert result.tx == tx and result.command_type.endswith(f"/known-{i}") and not result.events
    marker = await stack.clients.execute(commands_pb2.SetTarget(name="marker"))
    got = await stack.clients.get(queries_pb2.AllTargets(), at_least=marker.visible_at)
    assert [t.name for t in items(got, Target)] == ["marker"]

    check_copies(await quarantined(stack.env, len(poisons)), topic, poisons, offsets[1:-1], "command_svc")
    assert stack.command.quarantine.stats.total == len(poisons)


@pytest.mark.parametrize("transactional", MODES)
async def test_followers_find_the_leader_around_bad_lease_records(
    stack: InProcessStack, topic_prefix: str, transactional: bool
) -> None:
    env = {**stack.env, "MYKO_INSTANCE_ID": f"follower-{topic_prefix}"}
    follower = CommandService(CommandSettings.from_env(env), stack.app)
    proxy_port = free_port()
    topic = topic_prefix + "myko.command-lease"
    announced = (await stack.command.reader.end_offsets())[(topic, 0)]
    async with asyncio.timeout(60):
        await follower.start()
        # The follower joining the lease group makes the leader announce itself
        # again: let that land first, or it would overtake the records below.
        while (end := (await follower.reader.end_offsets())[(topic, 0)]) <= announced:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        await wait_read(follower, topic, end - 1)
    try:
        async with CommandProxy(port=proxy_port, upstream=f"127.0.0.1:{stack.command.grpc.port}"):
            poisons = writable(lease_poisons())
            # The leader "moves" behind a proxy; the announcement before it is stale.
            records = [
                Raw(LEADER_KEY, b"127.0.0.1:1"),
                *(p.record for p in poisons),
                Raw(LEADER_KEY, f"127.0.0.1:{proxy_port}".encode()),
            ]
            offsets = await write(stack.env, topic, records, transactional=transactional)
            await wait_read(follower, topic, offsets[-1])
            assert follower.leader_addr == f"127.0.0.1:{proxy_port}"
            # The follower forwards through the announced address.
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{follower.grpc.port}")
            try:
                via = Clients(command=channel, query=channel)
                done = await via.execute(commands_pb2.SetTarget(name="forwarded"))
                assert done.events[0].op == item_pb2.EVENT_OP_SET
            finally:
                await channel.close(None)
            # Both replicas read the lease topic and copy its bad records: duplicates share a key.
            copies = await quarantined(stack.env, 2 * len(poisons))
            check_copies(copies, topic, poisons, offsets[1:-1], "command_svc")
    finally:
        await follower.stop()
