"""Command -> event -> repo -> query, against the real broker."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from aiokafka import AIOKafkaConsumer
from conftest import InProcessStack
from myko_client import items, new_tx, next_matching, pack, visible
from targets.v1 import commands_pb2, entities_pb2, queries_pb2

from myko.status import exceeded_limit
from myko.v1 import command_pb2, item_pb2

pytestmark = pytest.mark.kafka

Target = entities_pb2.Target
# Proto3 enums are open: a client can send a number the enum does not declare.
BAD_STATUS = commands_pb2.SetTarget(name="x")
BAD_STATUS.status = 42  # type: ignore[assignment]


async def test_command_becomes_event_on_its_entity_topic(stack: InProcessStack, topic_prefix: str) -> None:
    result = await stack.clients.execute(commands_pb2.SetTarget(name="alpha", score=2.5, tags=["b", "a"]))
    assert [e.op for e in result.events] == [item_pb2.EVENT_OP_SET]
    landed = result.events[0].offset
    assert landed.topic == f"{topic_prefix}targets.v1.Target"

    consumer = AIOKafkaConsumer(
        landed.topic,
        bootstrap_servers=stack.env["KAFKA_BOOTSTRAP_SERVERS"],
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(10):
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                records = [r for rs in batch.values() for r in rs]
                if records:
                    break
    finally:
        await consumer.stop()
    (record,) = records
    assert record.key.decode() == result.events[0].id
    assert (record.partition, record.offset) == (landed.partition, landed.offset)
    headers = dict(record.headers)
    assert headers["myko-op"] == b"SET"
    assert headers["myko-tx"] == result.tx.encode()
    stored = Target.FromString(record.value)
    assert stored.name == "alpha" and list(stored.tags) == ["a", "b"]
    assert stored.item.version == 1 and stored.item.created_tx == result.tx


async def test_open_watch_emits_full_array_on_each_change(stack: InProcessStack) -> None:
    stream = stack.clients.watch(queries_pb2.AllTargets())
    try:
        async with asyncio.timeout(10):
            first = await stream.read()
            assert items(first, Target) == []
            created = await stack.clients.execute(commands_pb2.SetTarget(name="bravo"))
            after_create = await next_matching(stream, lambda r: visible(created, r.watermark))
            assert [t.name for t in items(after_create, Target)] == ["bravo"]

            second = await stack.clients.execute(commands_pb2.SetTarget(name="alpha"))
            after_second = await next_matching(stream, lambda r: visible(second, r.watermark))
            # The full array, ordered by name.
            assert [t.name for t in items(after_second, Target)] == ["alpha", "bravo"]
            assert after_second.seq > after_create.seq

            gone = await stack.clients.execute(commands_pb2.DeleteTarget(id=created.events[0].id))
            assert [e.op for e in gone.events] == [item_pb2.EVENT_OP_DEL]
            after_delete = await next_matching(stream, lambda r: visible(gone, r.watermark))
            assert [t.name for t in items(after_delete, Target)] == ["alpha"]
    finally:
        stream.cancel()


async def test_unrelated_change_emits_nothing(stack: InProcessStack) -> None:
    stream = stack.clients.watch(queries_pb2.TargetsByStatus(status=entities_pb2.TARGET_STATUS_PAUSED))
    try:
        async with asyncio.timeout(10):
            assert items(await stream.read(), Target) == []
            # An ACTIVE target does not change the PAUSED result: no emission.
            active = await stack.clients.execute(commands_pb2.SetTarget(name="a"))
            await stack.clients.get(queries_pb2.AllTargets(), at_least=active.visible_at)
            paused = await stack.clients.execute(
                commands_pb2.SetTarget(name="p", status=entities_pb2.TARGET_STATUS_PAUSED)
            )
            nxt = await stream.read()
            assert [t.name for t in items(nxt, Target)] == ["p"]
            assert visible(paused, nxt.watermark)
    finally:
        stream.cancel()


async def test_a_watch_joining_after_an_unrelated_change_gets_the_same_items_stamped_now(
    stack: InProcessStack,
) -> None:
    """The shared result's bytes are reused for a newcomer, with the watermark of where the mirror is."""
    paused = entities_pb2.TARGET_STATUS_PAUSED
    made = [
        await stack.clients.execute(commands_pb2.SetTarget(name=f"p{i}", status=paused)) for i in range(3)
    ]
    query = queries_pb2.TargetsByStatus(status=paused)
    first = stack.clients.watch(query, at_least=made[-1].visible_at)
    try:
        async with asyncio.timeout(10):
            before = await first.read()
            assert [t.name for t in items(before, Target)] == ["p0", "p1", "p2"]
            # An ACTIVE target: the mirror moves on, the PAUSED result does not change.
            active = await stack.clients.execute(commands_pb2.SetTarget(name="a"))
            second = stack.clients.watch(query, at_least=active.visible_at)
            try:
                joined = await second.read()
            finally:
                second.cancel()
            assert visible(active, joined.watermark) and not visible(active, before.watermark)
            assert joined.seq == before.seq  # the same evaluation, no new emission
            assert [i.SerializeToString() for i in joined.items] == [
                i.SerializeToString() for i in before.items
            ]
            assert joined.query_type == before.query_type == "targets.v1.TargetsByStatus"
    finally:
        first.cancel()


async def test_read_your_writes_with_get_fence(stack: InProcessStack) -> None:
    result = await stack.clients.execute(commands_pb2.SetTarget(name="fenced"))
    got = await stack.clients.get(queries_pb2.TargetById(id=result.events[0].id), at_least=result.visible_at)
    assert visible(result, got.watermark)
    assert [t.name for t in items(got, Target)] == ["fenced"]


async def test_repeated_tx_applies_once_and_returns_same_result(stack: InProcessStack) -> None:
    tx = new_tx()
    first = await stack.clients.execute(commands_pb2.SetTarget(name="once"), tx=tx)
    again = await stack.clients.execute(commands_pb2.SetTarget(name="once"), tx=tx)
    assert again == first
    # Concurrent duplicates too.
    tx2 = new_tx()
    results = await asyncio.gather(
        *[stack.clients.execute(commands_pb2.SetTarget(name="twice"), tx=tx2) for _ in range(5)]
    )
    assert all(r == results[0] for r in results)
    got = await stack.clients.get(queries_pb2.AllTargets(), at_least=results[0].visible_at)
    assert sorted(t.name for t in items(got, Target)) == ["once", "twice"]


async def test_reused_tx_with_other_command_is_rejected(stack: InProcessStack) -> None:
    tx = new_tx()
    await stack.clients.execute(commands_pb2.SetTarget(name="one"), tx=tx)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.clients.execute(commands_pb2.SetTarget(name="other"), tx=tx)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tx" in (err.value.details() or "")


async def test_concurrent_read_modify_write_loses_no_update(stack: InProcessStack) -> None:
    created = await stack.clients.execute(commands_pb2.SetTarget(name="counter"))
    target_id = created.events[0].id
    results = await asyncio.gather(
        *[stack.clients.execute(commands_pb2.RecordHits(id=target_id, count=1)) for _ in range(40)]
    )
    fence = item_pb2.Watermark()
    for r in results:
        fence.positions.extend(r.visible_at.positions)
    got = await stack.clients.get(queries_pb2.TargetById(id=target_id), at_least=fence)
    (target,) = items(got, Target)
    assert target.hit_count == 40
    assert target.item.version == 41
    # Every command built on a distinct version.
    versions = sorted(Target.FromString(r.events[0].entity.value).item.version for r in results)
    assert versions == list(range(2, 42))


async def test_expected_version_rejects_stale_writer(stack: InProcessStack) -> None:
    created = await stack.clients.execute(commands_pb2.SetTarget(name="v"))
    tid = created.events[0].id
    await stack.clients.execute(commands_pb2.SetTarget(id=tid, name="v2", expected_version=1))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.clients.execute(commands_pb2.SetTarget(id=tid, name="v3", expected_version=1))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "expected_version" in (err.value.details() or "")


async def test_several_events_are_all_or_nothing(stack: InProcessStack) -> None:
    ok = await stack.clients.execute(
        commands_pb2.ImportTargets(targets=[commands_pb2.SetTarget(name=f"t{i}") for i in range(5)])
    )
    assert len(ok.events) == 5
    # One bad target: the whole import is refused and nothing is written.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.clients.execute(
            commands_pb2.ImportTargets(
                targets=[commands_pb2.SetTarget(name="fine"), commands_pb2.SetTarget(name=" ")]
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "targets[1].name" in (err.value.details() or "")
    marker = await stack.clients.execute(commands_pb2.SetTarget(name="zz-marker"))
    got = await stack.clients.get(queries_pb2.AllTargets(), at_least=marker.visible_at)
    assert [t.name for t in items(got, Target)] == ["t0", "t1", "t2", "t3", "t4", "zz-marker"]
    # All five events of the import share one tx and were committed together.
    assert {e.tx for e in ok.events} == {ok.tx}


@pytest.mark.parametrize(
    ("request_", "code", "field"),
    [
        (
            command_pb2.CommandRequest(tx="not-a-uuid", command=pack(commands_pb2.SetTarget(name="x"))),
            "INVALID_ARGUMENT",
            "tx",
        ),
        (
            command_pb2.CommandRequest(command=pack(commands_pb2.SetTarget(name="x"))),
            "INVALID_ARGUMENT",
            "tx",
        ),
        (command_pb2.CommandRequest(tx=new_tx()), "INVALID_ARGUMENT", "command"),
        (
            command_pb2.CommandRequest(tx=new_tx(), command=pack(queries_pb2.AllTargets())),
            "UNIMPLEMENTED",
            "targets.v1.AllTargets",
        ),
        (
            command_pb2.CommandRequest(tx=new_tx(), command=pack(commands_pb2.SetTarget())),
            "INVALID_ARGUMENT",
            "name",
        ),
        (
            command_pb2.CommandRequest(tx=new_tx(), command=pack(BAD_STATUS)),
            "INVALID_ARGUMENT",
            "status",
        ),
        (
            command_pb2.CommandRequest(
                tx=new_tx(), command=pack(commands_pb2.RecordHits(id="nope", count=1))
            ),
            "FAILED_PRECONDITION",
            "nope",
        ),
    ],
)
async def test_bad_commands_get_contract_status(
    stack: InProcessStack, request_: command_pb2.CommandRequest, code: str, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.clients.execute_raw(request_)
    assert err.value.code().name == code
    assert field in (err.value.details() or "")


async def test_undecodable_and_oversized_payloads(stack: InProcessStack) -> None:
    from google.protobuf import any_pb2

    garbage = command_pb2.CommandRequest(
        tx=new_tx(),
        command=any_pb2.Any(type_url="type.googleapis.com/targets.v1.SetTarget", value=b"\xff\xff\xff"),
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.clients.execute_raw(garbage)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "command" in (err.value.details() or "")

    huge = commands_pb2.SetTarget(name="big", tags=["x" * 1000] * 600)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.clients.execute(huge)
    # Over a limit: RESOURCE_EXHAUSTED naming the limit, in the text and the trailer.
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "MYKO_MAX_COMMAND_BYTES" in (err.value.details() or "")
    assert exceeded_limit(err.value.code(), "", err.value.trailing_metadata()) == "MYKO_MAX_COMMAND_BYTES"

    # Past the transport limit gRPC itself refuses the message.
    enormous = commands_pb2.SetTarget(name="big", tags=["x" * 1_000_000] * 9)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.clients.execute(enormous)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_bad_queries_get_contract_status_and_do_not_hurt_other_streams(stack: InProcessStack) -> None:
    good = stack.clients.watch(queries_pb2.AllTargets())
    try:
        async with asyncio.timeout(15):
            await good.read()
            for bad, code in [
                (commands_pb2.SetTarget(name="not a query"), grpc.StatusCode.UNIMPLEMENTED),
                (queries_pb2.TargetsByStatus(status=99), grpc.StatusCode.INVALID_ARGUMENT),  # type: ignore[arg-type]
                (queries_pb2.TargetById(), grpc.StatusCode.INVALID_ARGUMENT),
            ]:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stack.clients.get(bad)
                assert err.value.code() == code
                bad_stream = stack.clients.watch(bad)
                with pytest.raises(grpc.aio.AioRpcError) as err2:
                    await bad_stream.read()
                assert err2.value.code() == code
            # The good stream still works.
            created = await stack.clients.execute(commands_pb2.SetTarget(name="still-here"))
            got = await next_matching(good, lambda r: visible(created, r.watermark))
            assert [t.name for t in items(got, Target)] == ["still-here"]
    finally:
        good.cancel()


async def test_identical_subscriptions_share_one_evaluation(stack: InProcessStack) -> None:
    streams = [
        stack.clients.watch(queries_pb2.TargetsByStatus(status=entities_pb2.TARGET_STATUS_ACTIVE))
        for _ in range(5)
    ]
    other = stack.clients.watch(queries_pb2.AllTargets())
    try:
        async with asyncio.timeout(10):
            firsts = [await s.read() for s in streams]
            await other.read()
            assert len(stack.query.hub) == 2
            created = await stack.clients.execute(commands_pb2.SetTarget(name="shared"))
            results = [await next_matching(s, lambda r: visible(created, r.watermark)) for s in streams]
            # Same evaluation: same seq and byte-identical payloads.
            assert len({r.SerializeToString() for r in results}) == 1
            assert len({f.seq for f in firsts}) == 1
    finally:
        for s in [*streams, other]:
            s.cancel()
    async with asyncio.timeout(5):
        while len(stack.query.hub):  # noqa: ASYNC110 - polling a plain counter
            await asyncio.sleep(0.05)
