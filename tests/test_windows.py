"""Windowed queries (top-N and pages) over the real broker: docs/windows.md."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from conftest import InProcessStack
from myko_client import items, next_matching, visible
from targets.v1 import commands_pb2, entities_pb2, queries_pb2

from myko.v1 import query_pb2

pytestmark = pytest.mark.kafka

Target = entities_pb2.Target


def names(result: query_pb2.QueryResult) -> list[str]:
    return [t.name for t in items(result, Target)]


async def test_top_targets_follows_the_scores_and_ignores_changes_below_it(stack: InProcessStack) -> None:
    for name, score in [("a", 1.0), ("b", 5.0), ("c", 3.0), ("d", 4.0)]:
        last = await stack.clients.execute(commands_pb2.SetTarget(id=f"t-{name}", name=name, score=score))
    stream = stack.clients.watch(queries_pb2.TopTargets(limit=2), at_least=last.visible_at)
    try:
        async with asyncio.timeout(20):
            first = await stream.read()
            assert names(first) == ["b", "d"]
            assert first.window.offset == 0 and not first.window.counted
            # Below the top 2: the window is the same, nothing is emitted.
            await stack.clients.execute(commands_pb2.SetTarget(id="t-a", name="a", score=2.0))
            await stack.clients.execute(commands_pb2.SetTarget(name="e", score=0.5))
            # Into the top 2: the very next emission (seq + 1: none came for the two
            # changes above), with the full window.
            top = await stack.clients.execute(commands_pb2.SetTarget(id="t-a", name="a", score=9.0))
            after = await stream.read()
            assert visible(top, after.watermark)
            assert names(after) == ["a", "b"] and after.seq == first.seq + 1
            # Deleting one in the window pulls the next one up.
            gone = await stack.clients.execute(commands_pb2.DeleteTarget(id="t-b"))
            after = await next_matching(stream, lambda r: visible(gone, r.watermark))
            assert names(after) == ["a", "d"]
    finally:
        stream.cancel()


async def test_a_page_shows_its_rows_and_the_total(stack: InProcessStack) -> None:
    result = await stack.clients.execute(
        commands_pb2.ImportTargets(targets=[commands_pb2.SetTarget(name=f"row {i:02d}") for i in range(25)])
    )
    page = await stack.clients.get(queries_pb2.TargetsPage(offset=10, limit=5), at_least=result.visible_at)
    assert names(page) == [f"row {i:02d}" for i in range(10, 15)]
    assert (page.window.offset, page.window.total, page.window.counted) == (10, 25, True)
    # limit 0: the declared default (50), here every row.
    everything = await stack.clients.get(queries_pb2.TargetsPage())
    assert len(everything.items) == 25 and everything.window.total == 25

    stream = stack.clients.watch(queries_pb2.TargetsPage(offset=10, limit=5))
    try:
        async with asyncio.timeout(20):
            await stream.read()
            # Before the page: the rows move down by one, the total grows.
            early = await stack.clients.execute(commands_pb2.SetTarget(name="row 00a"))
            moved = await next_matching(stream, lambda r: visible(early, r.watermark))
            assert names(moved) == ["row 09", "row 10", "row 11", "row 12", "row 13"]
            assert moved.window.total == 26
    finally:
        stream.cancel()


async def test_a_window_past_its_bounds_is_invalid_argument(stack: InProcessStack) -> None:
    for query in (
        queries_pb2.TargetsPage(limit=10_000_000),
        queries_pb2.TargetsPage(offset=20_000_000),
        queries_pb2.TopTargets(limit=101),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stack.clients.get(query)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "must be within" in (err.value.details() or "")


async def test_identical_windows_share_one_evaluation_and_pages_one_order(stack: InProcessStack) -> None:
    # limit 0 is the default limit 50: the same window as asking for 50; limit 5 is
    # another window (its own evaluation) over the same order.
    streams = [
        stack.clients.watch(q)
        for q in (
            queries_pb2.TargetsPage(),
            queries_pb2.TargetsPage(limit=50),
            queries_pb2.TargetsPage(limit=5),
        )
    ]
    try:
        async with asyncio.timeout(20):
            for s in streams:
                await s.read()
        pages = [
            k for k in stack.query.hub._evals if isinstance(k, tuple) and k[0] == "targets.v1.TargetsPage"
        ]
        assert len(pages) == 2
    finally:
        for s in streams:
            s.cancel()
