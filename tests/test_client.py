"""myko.Client against the real broker: typed round trips, read-your-writes, errors as the hierarchy."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from targets.v1 import commands_pb2, entities_pb2, queries_pb2, reports_pb2

from myko import (
    Client,
    DeadlineExceeded,
    InvalidArgument,
    MykoError,
    Rejected,
    Unavailable,
    UnknownType,
)
from myko.errors import ConfigError
from myko.local.ports import free_port

pytestmark = pytest.mark.kafka

Target = entities_pb2.Target
ACTIVE = entities_pb2.TARGET_STATUS_ACTIVE


async def test_execute_then_get_and_watch_typed_results(client: Client) -> None:
    created = await client.execute(commands_pb2.SetTarget(name="alpha", score=2.0))
    assert uuid.UUID(created.tx).version == 4  # generated when not given
    (alpha_id,) = [e.id for e in created.events]

    # Read-your-writes: at_least takes the CommandResult (or its visible_at).
    targets = await client.get(queries_pb2.AllTargets(), at_least=created)
    assert [(type(t), t.item.id, t.name, t.score) for t in targets] == [(Target, alpha_id, "alpha", 2.0)]

    async with asyncio.timeout(30):
        stream = client.watch(queries_pb2.TargetsByStatus(status=ACTIVE))
        first = await anext(stream)
        assert [t.name for t in first] == ["alpha"]
        beta = await client.execute(commands_pb2.SetTarget(name="beta"))
        async for active in stream:
            if len(active) == 2:
                break
        assert [t.name for t in active] == ["alpha", "beta"]
        await stream.aclose()

    # Reports: the value message the report declares.
    counts = await client.get(reports_pb2.TargetCountsByStatus(), at_least=beta.visible_at)
    assert isinstance(counts, reports_pb2.StatusCounts)
    assert counts.total == 2
    assert {c.status: c.count for c in counts.counts}[ACTIVE] == 2
    async with asyncio.timeout(30):
        async for value in client.watch(reports_pb2.TargetCountsByStatus(), at_least=beta):
            assert isinstance(value, reports_pb2.StatusCounts) and value.total == 2
            break


async def test_a_result_larger_than_grpcs_default_message_limit_arrives_whole(client: Client) -> None:
    """gRPC clients refuse messages over 4 MB unless told otherwise; a full array is often larger."""
    tags = [f"{i:02d}" + "t" * 62 for i in range(8)]  # 8 x 64 characters
    last = None
    for batch in range(12):  # 500 per command: within MYKO_MAX_COMMAND_BYTES
        targets = [
            commands_pb2.SetTarget(
                id=f"big-{batch:02d}-{i:03d}", name=f"{batch:02d}-{i:03d}-" + "n" * 190, tags=tags
            )
            for i in range(500)
        ]
        last = await client.execute(commands_pb2.ImportTargets(targets=targets))
    assert last is not None
    everything = await client.get(queries_pb2.AllTargets(), at_least=last)
    assert len(everything) == 6000
    assert sum(t.ByteSize() for t in everything) > 4 * 1024 * 1024
    async with asyncio.timeout(30):
        stream = client.watch(queries_pb2.AllTargets(), at_least=last)
        first = await anext(stream)
        assert [t.item.id for t in first] == [t.item.id for t in everything]
        await stream.aclose()


async def test_the_same_tx_takes_effect_once(client: Client) -> None:
    created = await client.execute(commands_pb2.SetTarget(name="counted"))
    tid = created.events[0].id
    tx = str(uuid.uuid4())
    first = await client.execute(commands_pb2.RecordHits(id=tid, count=3), tx=tx)
    again = await client.execute(commands_pb2.RecordHits(id=tid, count=3), tx=tx)
    assert first == again and first.tx == tx
    (target,) = await client.get(queries_pb2.TargetById(id=tid), at_least=again)
    assert target.hit_count == 3


async def test_failures_raise_the_error_hierarchy(client: Client) -> None:
    with pytest.raises(InvalidArgument) as bad:
        await client.execute(commands_pb2.SetTarget(name=" "))
    assert bad.value.field == "name" and not bad.value.retriable
    assert bad.value.message == "name: must not be empty"

    with pytest.raises(Rejected, match="nope"):
        await client.execute(commands_pb2.RecordHits(id="nope", count=1))
    # The declared reference: a Target in a Zone that does not exist.
    with pytest.raises(Rejected, match=r"zone_id: targets\.v1\.Zone missing-zone does not exist"):
        await client.execute(commands_pb2.SetTarget(name="orphan", zone_id="missing-zone"))
    with pytest.raises(UnknownType, match=r"targets\.v1\.AllTargets"):
        await client.execute(queries_pb2.AllTargets())

    tx = str(uuid.uuid4())
    await client.execute(commands_pb2.SetTarget(name="first"), tx=tx)
    with pytest.raises(InvalidArgument) as reused:
        await client.execute(commands_pb2.SetTarget(name="second"), tx=tx)
    assert reused.value.field == "tx"

    # A stream's failure surfaces from the `async for`.
    with pytest.raises(InvalidArgument) as empty_id:
        async with asyncio.timeout(30):
            async for _ in client.watch(queries_pb2.TargetById(id="")):
                pass
    assert empty_id.value.field == "id"
    with pytest.raises(InvalidArgument) as bad_param:
        await client.get(reports_pb2.ZoneTotals(zone_id="has blanks"))
    assert bad_param.value.field == "zone_id"

    # Not a query or report at all: refused before anything is sent (and by mypy).
    with pytest.raises(InvalidArgument, match="declares neither"):
        await client.get(commands_pb2.SetTarget(name="x"))  # type: ignore[call-overload]


async def test_unreachable_server_is_unavailable_and_retriable() -> None:
    async with Client(command_addr=f"127.0.0.1:{free_port()}", timeout_s=1.0) as c:
        with pytest.raises(MykoError) as err:
            await c.execute(commands_pb2.SetTarget(name="x"))
    # Nothing listens: UNAVAILABLE, or the deadline while connecting; both retriable.
    assert isinstance(err.value, Unavailable | DeadlineExceeded)
    assert err.value.retriable


async def test_misuse_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        Client()
    c = Client(query_addr="127.0.0.1:1")
    with pytest.raises(ConfigError, match="not started"):
        await c.get(queries_pb2.AllTargets())
    async with c:
        with pytest.raises(ConfigError, match="no command_addr"):
            await c.execute(commands_pb2.SetTarget(name="x"))
