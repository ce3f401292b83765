"""Two command_svc replicas: one leader writes, the other forwards; no lost or doubled update."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from conftest import InProcessStack
from myko_client import Clients, items, new_tx
from targets.v1 import commands_pb2, entities_pb2, queries_pb2

from myko import Client, InvalidArgument, Rejected
from myko.app import App
from myko.command_service import CommandService
from myko.settings import CommandSettings
from myko.v1 import item_pb2

pytestmark = pytest.mark.kafka

Target = entities_pb2.Target


@pytest.fixture
async def second(
    stack: InProcessStack, myko_env: dict[str, str], example_app: App
) -> AsyncIterator[tuple[CommandService, Clients]]:
    svc = CommandService(CommandSettings.from_env({**myko_env, "MYKO_INSTANCE_ID": "replica-2"}), example_app)
    await svc.start()
    clients = Clients(
        command=grpc.aio.insecure_channel(f"127.0.0.1:{svc.grpc.port}"), query=stack.clients.query
    )
    # A join triggers a rebalance; the sticky lease returns to the same leader.
    async with asyncio.timeout(30):
        while not (stack.command.bus.running or svc.bus.running):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    try:
        yield svc, clients
    finally:
        await clients.command.close(None)
        await svc.stop()


async def test_concurrent_updates_through_both_replicas_lose_nothing(
    stack: InProcessStack, second: tuple[CommandService, Clients]
) -> None:
    other, other_clients = second
    assert stack.command.bus.running and not other.bus.running  # the first leader kept the lease
    created = await stack.clients.execute(commands_pb2.SetTarget(name="shared"))
    tid = created.events[0].id
    sends = [
        (stack.clients if i % 2 else other_clients).execute(commands_pb2.RecordHits(id=tid, count=1))
        for i in range(30)
    ]
    results = await asyncio.gather(*sends)
    fence = item_pb2.Watermark()
    for r in results:
        fence.positions.extend(r.visible_at.positions)
    (target,) = items(await stack.clients.get(queries_pb2.TargetById(id=tid), at_least=fence), Target)
    assert target.hit_count == 30 and target.item.version == 31


async def test_same_tx_through_both_replicas_applies_once(
    stack: InProcessStack, second: tuple[CommandService, Clients]
) -> None:
    _, other_clients = second
    created = await stack.clients.execute(commands_pb2.SetTarget(name="once"))
    tid = created.events[0].id
    tx = new_tx()
    a, b = await asyncio.gather(
        stack.clients.execute(commands_pb2.RecordHits(id=tid, count=7), tx=tx),
        other_clients.execute(commands_pb2.RecordHits(id=tid, count=7), tx=tx),
    )
    assert a == b
    (target,) = items(await stack.clients.get(queries_pb2.TargetById(id=tid), at_least=a.visible_at), Target)
    assert target.hit_count == 7


async def test_follower_takes_over_when_the_leader_stops(
    stack: InProcessStack, second: tuple[CommandService, Clients]
) -> None:
    other, other_clients = second
    before = await other_clients.execute(commands_pb2.SetTarget(name="before"))
    await stack.command.stop()
    async with asyncio.timeout(30):
        while not other.bus.running:  # noqa: ASYNC110 - waiting on the rebalance
            await asyncio.sleep(0.05)
    after = await other_clients.execute(commands_pb2.SetTarget(name="after"))
    got = await stack.clients.get(queries_pb2.AllTargets(), at_least=after.visible_at)
    assert sorted(t.name for t in items(got, Target)) == ["after", "before"]
    assert before.events[0].id != after.events[0].id
    # Restart the first one so the fixture can stop it again.
    stack.command = CommandService(stack.command.settings, stack.app)
    await stack.command.start()


async def test_follower_answers_with_the_leaders_result_and_errors(
    stack: InProcessStack, second: tuple[CommandService, Clients]
) -> None:
    other, _ = second
    assert not other.bus.running  # every call below is forwarded to the leader
    async with Client(command_addr=f"127.0.0.1:{other.grpc.port}") as follower:
        created = await follower.execute(commands_pb2.SetTarget(name="forwarded"))
        assert created.command_type == "targets.v1.SetTarget" and len(created.events) == 1
        # The leader's error reaches the caller with its class, field and message.
        with pytest.raises(InvalidArgument) as bad:
            await follower.execute(commands_pb2.SetTarget(name=" "))
        assert (bad.value.field, bad.value.message) == ("name", "name: must not be empty")
        with pytest.raises(Rejected, match="nope"):
            await follower.execute(commands_pb2.RecordHits(id="nope", count=1))


async def test_a_batch_sent_to_the_follower_is_run_by_the_leader_once(
    stack: InProcessStack, second: tuple[CommandService, Clients]
) -> None:
    other, _ = second
    assert not other.bus.running
    async with (
        Client(command_addr=f"127.0.0.1:{other.grpc.port}") as follower,
        Client(command_addr=f"127.0.0.1:{stack.command.grpc.port}") as leader,
    ):
        created = await follower.execute(commands_pb2.SetTarget(name="batched"))
        tid = created.events[0].id
        hits = [commands_pb2.RecordHits(id=tid, count=1) for _ in range(10)]
        txs = [new_tx() for _ in hits]
        via_follower, via_leader = await asyncio.gather(
            follower.execute_batch(
                [*hits, commands_pb2.RecordHits(id="nope", count=1)], txs=[*txs, new_tx()]
            ),
            leader.execute_batch(hits, txs=txs),
        )
        assert via_follower[:10] == via_leader
        assert isinstance(via_follower[10], Rejected)
        last = via_leader[-1]
        assert not isinstance(last, Exception)
        (target,) = items(
            await stack.clients.get(queries_pb2.TargetById(id=tid), at_least=last.visible_at), Target
        )
        assert target.hit_count == 10
