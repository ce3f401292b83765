"""Callers that give up (deadline) while their command is queued or being committed.

Found by the cluster fault test: a caller whose deadline passed during a group
commit cancelled its future, and setting its result then failed the rest of
the batch with INTERNAL although their commands were committed.
"""

from __future__ import annotations

import asyncio
import random

import grpc
import pytest
from conftest import InProcessStack
from myko_client import items, new_tx
from targets.v1 import commands_pb2, entities_pb2, queries_pb2

from myko.v1 import item_pb2

pytestmark = pytest.mark.kafka


async def test_callers_giving_up_mid_batch_do_not_fail_the_others(stack: InProcessStack) -> None:
    created = await stack.clients.execute(commands_pb2.SetTarget(name="deadlines"))
    tid = created.events[0].id
    rng = random.Random(7)
    hasty: list[str] = []
    fence = item_pb2.Watermark()

    async def hit(tx: str, timeout_s: float) -> None:
        try:
            result = await stack.clients.execute(
                commands_pb2.RecordHits(id=tid, count=1), tx=tx, timeout_s=timeout_s
            )
            fence.positions.extend(result.visible_at.positions)
        except grpc.aio.AioRpcError as exc:
            # Only the callers with a tiny deadline may fail, and only by that deadline.
            assert timeout_s < 1 and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED, exc
            hasty.append(tx)

    txs = [new_tx() for _ in range(200)]
    await asyncio.gather(*(hit(tx, rng.choice([0.005, 0.02, 0.05, 15.0])) for tx in txs))
    # Whatever the hasty ones did, retrying them with their tx settles each exactly once.
    for tx in hasty:
        result = await stack.clients.execute(commands_pb2.RecordHits(id=tid, count=1), tx=tx)
        fence.positions.extend(result.visible_at.positions)
    (target,) = items(
        await stack.clients.get(queries_pb2.TargetById(id=tid), at_least=fence), entities_pb2.Target
    )
    assert target.hit_count == len(txs)
