"""ReportBus against the real broker: live values, combined entity types, status codes."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from conftest import InProcessStack
from google.protobuf import any_pb2
from myko_client import Stream, new_tx, next_matching, unpack, visible
from targets.v1 import commands_pb2, entities_pb2, queries_pb2, reports_pb2

from myko.v1 import command_pb2, report_pb2

pytestmark = pytest.mark.kafka

ACTIVE = entities_pb2.TARGET_STATUS_ACTIVE
PAUSED = entities_pb2.TARGET_STATUS_PAUSED
RETIRED = entities_pb2.TARGET_STATUS_RETIRED


def counts(result: report_pb2.ReportResult) -> dict[int, int]:
    value = unpack(result.value, reports_pb2.StatusCounts)
    return {c.status: c.count for c in value.counts} | {0: value.total}


def totals(result: report_pb2.ReportResult) -> list[tuple[str, int, float]]:
    value = unpack(result.value, reports_pb2.ZoneTotalsValue)
    return [(z.zone_name, z.target_count, z.score_total) for z in value.zones]


async def after(
    stream: Stream[report_pb2.ReportResult], write: command_pb2.CommandResult
) -> report_pb2.ReportResult:
    return await next_matching(stream, lambda r: visible(write, r.watermark))


async def test_counts_by_status_stream_follows_commands(stack: InProcessStack) -> None:
    stream = stack.clients.watch_report(reports_pb2.TargetCountsByStatus())
    try:
        async with asyncio.timeout(15):
            first = await stream.read()
            assert first.report_type == "targets.v1.TargetCountsByStatus"
            assert counts(first) == {ACTIVE: 0, PAUSED: 0, RETIRED: 0, 0: 0}

            a = await stack.clients.execute(commands_pb2.SetTarget(name="a"))
            await stack.clients.execute(commands_pb2.SetTarget(name="b", status=PAUSED))
            c = await stack.clients.execute(commands_pb2.SetTarget(name="c", status=PAUSED))
            assert counts(await after(stream, c)) == {ACTIVE: 1, PAUSED: 2, RETIRED: 0, 0: 3}

            retired = await stack.clients.execute(
                commands_pb2.SetTarget(id=a.events[0].id, name="a", status=RETIRED)
            )
            assert counts(await after(stream, retired)) == {ACTIVE: 0, PAUSED: 2, RETIRED: 1, 0: 3}

            gone = await stack.clients.execute(commands_pb2.DeleteTarget(id=c.events[0].id))
            last = await after(stream, gone)
            assert counts(last) == {ACTIVE: 0, PAUSED: 1, RETIRED: 1, 0: 2}
            assert last.seq > first.seq
    finally:
        stream.cancel()


async def test_zone_totals_combine_zones_and_targets(stack: InProcessStack) -> None:
    north = (await stack.clients.execute(commands_pb2.SetZone(name="north"))).events[0].id
    south = (await stack.clients.execute(commands_pb2.SetZone(name="south"))).events[0].id
    every = stack.clients.watch_report(reports_pb2.ZoneTotals())
    only_north = stack.clients.watch_report(reports_pb2.ZoneTotals(zone_id=north))
    try:
        async with asyncio.timeout(15):
            await stack.clients.execute(commands_pb2.SetTarget(name="n1", zone_id=north, score=1.5))
            n2 = await stack.clients.execute(commands_pb2.SetTarget(name="n2", zone_id=north, score=2.0))
            await stack.clients.execute(commands_pb2.SetTarget(name="loose", score=100.0))
            s1 = await stack.clients.execute(commands_pb2.SetTarget(name="s1", zone_id=south, score=-1.0))
            assert totals(await after(every, s1)) == [("north", 2, 3.5), ("south", 1, -1.0)]
            # A change elsewhere does not move the filtered report: its last value reflects n2.
            assert totals(await after(only_north, n2)) == [("north", 2, 3.5)]

            # A change to the Zone alone (its name) shows up too.
            renamed = await stack.clients.execute(commands_pb2.SetZone(id=north, name="Arctic"))
            assert totals(await after(every, renamed)) == [("Arctic", 2, 3.5), ("south", 1, -1.0)]

            got = await stack.clients.get_report(reports_pb2.ZoneTotals(zone_id=south))
            assert got.report_type == "targets.v1.ZoneTotals"
            assert totals(got) == [("south", 1, -1.0)]
    finally:
        every.cancel()
        only_north.cancel()


async def test_report_status_codes(stack: InProcessStack) -> None:
    unknown = report_pb2.ReportRequest(
        report=any_pb2.Any(type_url="type.googleapis.com/targets.v1.NoSuchReport")
    )
    call = stack.clients.report.unary_unary(  # type: ignore[union-attr]
        "/myko.v1.ReportBus/Get",
        request_serializer=report_pb2.ReportRequest.SerializeToString,
        response_deserializer=report_pb2.ReportResult.FromString,
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(unknown, timeout=10)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "targets.v1.NoSuchReport" in (err.value.details() or "")

    # A query is not a report.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.clients.get_report(queries_pb2.AllTargets())
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED

    for bad in ("not an id", "x" * 500, "tab\there"):
        stream = stack.clients.watch_report(reports_pb2.ZoneTotals(zone_id=bad))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stream.read()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "zone_id" in (err.value.details() or "")

    garbled = report_pb2.ReportRequest(
        report=any_pb2.Any(type_url="type.googleapis.com/targets.v1.ZoneTotals", value=b"\xff\xff\xff")
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(garbled, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    # The bad requests hurt nobody: a good one still answers.
    ok = await stack.clients.get_report(reports_pb2.TargetCountsByStatus())
    assert counts(ok)[0] == 0


async def test_identical_report_watches_share_one_evaluation(stack: InProcessStack) -> None:
    streams = [stack.clients.watch_report(reports_pb2.TargetCountsByStatus()) for _ in range(5)]
    try:
        async with asyncio.timeout(15):
            firsts = [await s.read() for s in streams]
            assert len(stack.report.hub) == 1
            write = await stack.clients.execute(commands_pb2.SetTarget(name="shared"), tx=new_tx())
            results = [await after(s, write) for s in streams]
            # One evaluation, one serialised payload: every subscriber gets the same result.
            assert len({r.SerializeToString() for r in results}) == 1
            assert {f.seq for f in firsts} == {firsts[0].seq}
    finally:
        for s in streams:
            s.cancel()


async def test_a_new_watch_is_stamped_with_the_current_watermark(stack: InProcessStack) -> None:
    """Joining a shared evaluation whose value did not change still reflects a fenced write."""
    cmds, reps = commands_pb2, reports_pb2
    created = await stack.clients.execute(cmds.SetTarget(name="stamped"))
    first = stack.clients.watch_report(reps.TargetCountsByStatus())
    try:
        async with asyncio.timeout(10):
            await first.read()
            # A hit changes no status count: the shared value stays the same.
            hit = await stack.clients.execute(cmds.RecordHits(id=created.events[0].id, count=1))
            second = stack.clients.watch_report(reps.TargetCountsByStatus(), at_least=hit.visible_at)
            try:
                got = await second.read()
                assert visible(hit, got.watermark)
            finally:
                second.cancel()
    finally:
        first.cancel()
