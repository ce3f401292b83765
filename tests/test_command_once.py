"""A retry racing its own first attempt still takes effect once."""

from __future__ import annotations

import asyncio

import pytest
from conftest import InProcessStack
from myko_client import items, new_tx, pack
from targets.v1 import commands_pb2, entities_pb2, queries_pb2

from myko.v1 import command_pb2

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("yields", [0, 1, 3, 10, 50])
async def test_retry_after_caller_gave_up_mid_flight_applies_once(stack: InProcessStack, yields: int) -> None:
    created = await stack.clients.execute(commands_pb2.SetTarget(name="racy"))
    tid = created.events[0].id
    request = command_pb2.CommandRequest(tx=new_tx(), command=pack(commands_pb2.RecordHits(id=tid, count=1)))
    bus = stack.command.bus
    first = asyncio.create_task(bus.execute(request))
    for _ in range(yields):  # give up at different points: queued, validating, committing
        await asyncio.sleep(0)
    first.cancel()
    retry = await bus.execute(request)
    again = await bus.execute(request)
    assert retry == again
    got = await stack.clients.get(queries_pb2.TargetById(id=tid), at_least=retry.visible_at)
    (target,) = items(got, entities_pb2.Target)
    assert target.hit_count == 1
