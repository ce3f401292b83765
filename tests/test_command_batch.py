"""ExecuteBatch against the real broker: each command its own tx, outcome and once-only; the bounds."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from conftest import InProcessStack
from google.protobuf import any_pb2
from myko_client import new_tx, pack
from targets.v1 import commands_pb2, entities_pb2, queries_pb2

from myko.app import App
from myko.client import Client
from myko.errors import (
    InvalidArgument,
    LimitExceeded,
    MykoError,
    Rejected,
    ResourceExhausted,
    UnknownType,
)
from myko.principal import ANONYMOUS
from myko.status import error_from_command_error
from myko.v1 import command_pb2

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]


@pytest.fixture
async def small_limits(myko_env: dict[str, str], example_app: App) -> AsyncIterator[InProcessStack]:
    env = {
        **myko_env,
        "MYKO_MAX_BATCH_COMMANDS": "20",
        "MYKO_MAX_BATCH_IN_FLIGHT": "30",
        "MYKO_MAX_BATCH_RESULT_BYTES": "2048",
        "MYKO_MAX_COMMAND_BYTES": "1024",
    }
    s = await InProcessStack.start(env, example_app)
    try:
        yield s
    finally:
        await s.stop()


def client_of(stack: InProcessStack) -> Client:
    return Client(
        command_addr=f"127.0.0.1:{stack.command.grpc.port}",
        query_addr=f"127.0.0.1:{stack.query.grpc.port}",
        timeout_s=60,
    )


def results(outcomes: list[command_pb2.CommandResult | MykoError]) -> list[command_pb2.CommandResult]:
    for o in outcomes:
        assert isinstance(o, command_pb2.CommandResult), o
    return [o for o in outcomes if isinstance(o, command_pb2.CommandResult)]


async def target(client: Client, tid: str, after: command_pb2.CommandResult) -> entities_pb2.Target:
    (found,) = await client.get(queries_pb2.TargetById(id=tid), at_least=after)
    return found


async def test_each_command_gets_its_own_result_in_order(stack: InProcessStack) -> None:
    names = [f"batch-{i}" for i in range(50)]
    txs = [new_tx() for _ in names]
    async with client_of(stack) as client:
        got = results(await client.execute_batch([commands_pb2.SetTarget(name=n) for n in names], txs=txs))
        assert [r.tx for r in got] == txs
        for name, result in zip(names, got, strict=True):
            assert result.command_type == "targets.v1.SetTarget"
            (event,) = result.events
            stored = await target(client, event.id, result)
            assert stored.name == name
            assert stored.item.id == event.id
        # The same commands one by one: what Execute answers has the same shape.
        single = await client.execute(commands_pb2.SetTarget(name="single"))
        assert single.command_type == got[0].command_type
        assert single.visible_at.positions and got[0].visible_at.positions


async def test_a_retried_batch_answers_the_first_results_and_writes_nothing_twice(
    stack: InProcessStack,
) -> None:
    async with client_of(stack) as client:
        created = await client.execute(commands_pb2.SetTarget(name="counted"))
        tid = created.events[0].id
        hits = [commands_pb2.RecordHits(id=tid, count=1) for _ in range(40)]
        txs = [new_tx() for _ in hits]
        first = results(await client.execute_batch(hits, txs=txs))
        again = results(await client.execute_batch(hits, txs=txs))
        assert again == first
        # Half old, half new: the old are answered from the tx log, the new run.
        more = [new_tx() for _ in range(20)]
        mixed = results(await client.execute_batch(hits[:40], txs=txs[:20] + more))
        assert mixed[:20] == first[:20]
        assert (await target(client, tid, mixed[-1])).hit_count == 60
        # Execute of a tx a batch ran answers the batch's result too.
        alone = await client.execute_request(command_pb2.CommandRequest(tx=txs[7], command=pack(hits[7])))
        assert alone == first[7]
        assert (await target(client, tid, alone)).hit_count == 60


async def test_bad_commands_fail_alone_with_their_own_status(small_limits: InProcessStack) -> None:
    stack = small_limits
    async with client_of(stack) as client:
        created = await client.execute(commands_pb2.SetTarget(name="poisoned"))
        tid = created.events[0].id
        good = commands_pb2.RecordHits(id=tid, count=1)
        reused = new_tx()
        await client.execute(commands_pb2.SetTarget(name="first use"), tx=reused)
        requests = [
            command_pb2.CommandRequest(tx=new_tx(), command=pack(good)),
            # handler refuses: no such target
            command_pb2.CommandRequest(
                tx=new_tx(), command=pack(commands_pb2.RecordHits(id="nope", count=1))
            ),
            command_pb2.CommandRequest(tx="not-a-uuid", command=pack(good)),
            command_pb2.CommandRequest(
                tx=new_tx(), command=any_pb2.Any(type_url="type.googleapis.com/nobody.Knows", value=b"")
            ),
            command_pb2.CommandRequest(
                tx=new_tx(),
                command=any_pb2.Any(type_url="type.googleapis.com/targets.v1.RecordHits", value=b"\xff\xff"),
            ),
            command_pb2.CommandRequest(
                tx=new_tx(), command=pack(commands_pb2.SetTarget(name="x" * 2000))
            ),  # over MYKO_MAX_COMMAND_BYTES
            command_pb2.CommandRequest(tx=reused, command=pack(good)),  # tx used for another command
            command_pb2.CommandRequest(tx=new_tx(), command=pack(commands_pb2.RecordHits(id=tid, count=-1))),
            command_pb2.CommandRequest(tx=new_tx(), command=pack(good)),
        ]
        answer = await client.execute_batch_request(command_pb2.CommandBatchRequest(commands=requests))
        outcomes = [
            o.result if o.HasField("result") else error_from_command_error(o.error) for o in answer.outcomes
        ]
        assert len(outcomes) == len(requests)
        ok, missing, bad_tx, unknown, undecodable, big, reused_tx, negative, ok2 = outcomes
        assert isinstance(ok, command_pb2.CommandResult) and isinstance(ok2, command_pb2.CommandResult)
        assert isinstance(missing, Rejected) and "does not exist" in missing.message
        assert isinstance(bad_tx, InvalidArgument) and bad_tx.field == "tx"
        assert isinstance(unknown, UnknownType)
        assert isinstance(undecodable, InvalidArgument) and undecodable.field == "command"
        assert isinstance(big, LimitExceeded) and big.limit == "MYKO_MAX_COMMAND_BYTES"
        assert isinstance(reused_tx, InvalidArgument) and "different command" in reused_tx.message
        assert isinstance(negative, InvalidArgument) and negative.field == "count"
        assert (await target(client, tid, ok2)).hit_count == 2


async def test_over_the_bounds_is_resource_exhausted_and_runs_nothing(small_limits: InProcessStack) -> None:
    stack = small_limits
    async with client_of(stack) as client:
        created = await client.execute(commands_pb2.SetTarget(name="bounded"))
        tid = created.events[0].id
        hit = commands_pb2.RecordHits(id=tid, count=1)
        with pytest.raises(LimitExceeded) as too_many:
            await client.execute_batch([hit] * 21)
        assert too_many.value.limit == "MYKO_MAX_BATCH_COMMANDS"
        assert "21" in too_many.value.message and "20" in too_many.value.message

        # In flight across calls: 20 running, 20 more would pass 30. Retriable.
        batches = stack.command.batches
        one = command_pb2.CommandBatchRequest(
            commands=[command_pb2.CommandRequest(tx=new_tx(), command=pack(hit)) for _ in range(20)]
        )
        two = command_pb2.CommandBatchRequest(
            commands=[command_pb2.CommandRequest(tx=new_tx(), command=pack(hit)) for _ in range(20)]
        )
        first, second = await asyncio.gather(
            batches.execute(one, ANONYMOUS), batches.execute(two, ANONYMOUS), return_exceptions=True
        )
        assert isinstance(first, command_pb2.CommandBatchResult)
        assert isinstance(second, ResourceExhausted) and not isinstance(second, LimitExceeded)
        assert second.retriable and "MYKO_MAX_BATCH_IN_FLIGHT" in second.message
        assert batches.in_flight == 0
        after = results(await client.execute_batch([hit]))
        assert (await target(client, tid, after[0])).hit_count == 21


async def test_results_past_the_answer_size_took_effect_and_are_fetched_by_tx(
    small_limits: InProcessStack,
) -> None:
    stack = small_limits
    names = [f"sized-{i:02}" for i in range(20)]
    txs = [new_tx() for _ in names]
    async with client_of(stack) as client:
        outcomes = await client.execute_batch([commands_pb2.SetTarget(name=n) for n in names], txs=txs)
        fitted = [o for o in outcomes if isinstance(o, command_pb2.CommandResult)]
        cut = [o for o in outcomes if not isinstance(o, command_pb2.CommandResult)]
        assert fitted and cut, "2 KiB holds some of 20 results, not all"
        assert outcomes[: len(fitted)] == fitted  # the answer is cut at the end
        answer_bytes = sum(r.ByteSize() for r in fitted)
        assert answer_bytes <= 2048
        for i, err in enumerate(cut, start=len(fitted)):
            assert isinstance(err, ResourceExhausted) and err.retriable
            assert "took effect" in err.message
            again = await client.execute(commands_pb2.SetTarget(name=names[i]), tx=txs[i])
            assert (await target(client, again.events[0].id, again)).name == names[i]
        # The retry ran nothing new: a fresh tx for the same name makes a second Target.
        everything = await client.get(queries_pb2.AllTargets())
        assert sorted(t.name for t in everything if t.name.startswith("sized-")) == names


async def test_concurrent_batches_on_one_hot_target_lose_no_update(stack: InProcessStack) -> None:
    async with client_of(stack) as client:
        created = await client.execute(commands_pb2.SetTarget(name="hot"))
        tid = created.events[0].id
        hit = commands_pb2.RecordHits(id=tid, count=1)
        per_batch, batches = 100, 8
        answers = await asyncio.gather(*(client.execute_batch([hit] * per_batch) for _ in range(batches)))
        last = max((r for a in answers for r in results(a)), key=lambda r: r.visible_at.positions[0].offset)
        assert (await target(client, tid, last)).hit_count == per_batch * batches


async def test_a_command_twice_in_one_batch_takes_effect_once(stack: InProcessStack) -> None:
    async with client_of(stack) as client:
        created = await client.execute(commands_pb2.SetTarget(name="twice"))
        tid = created.events[0].id
        tx = str(uuid.uuid4())
        hit = commands_pb2.RecordHits(id=tid, count=5)
        a, b = results(await client.execute_batch([hit, hit], txs=[tx, tx]))
        assert a == b
        assert (await target(client, tid, a)).hit_count == 5
