"""2,000 Watches opened at once on a 100,000-entity store: every one gets its first result.

Issue 12, finding 6: such a burst ended 30-110 streams with CANCELLED and no
log line. gRPC core holds new calls until the Python server picks them up, one
per event-loop turn; while the loop was busy starting the zones' evaluations
more than 1,000 piled up, and gRPC's default backlog protection (1,000, then
random drops up to 3,000) cancelled some before Myko ever saw them.

With 2,000 distinct zones each new evaluation used to scan all 100,000
targets on the event loop: the server picked up a few calls a second and gRPC
cancelled the ones it held for more than 30 s. TargetsInZone now selects from
an index (Repo.watch(equal=...)), so a start costs the zone's targets.

The query service runs in this process, its store filled directly (what its
repo feed would do, without replaying 100,000 records through Kafka); the
clients run in their own process over 20 connections, as separate pages would.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import timestamp_pb2
from myko_client import Clients
from polling import eventually
from targets.v1 import entities_pb2, queries_pb2

from myko.app import App
from myko.events import set_event
from myko.live_kind import LiveKind
from myko.live_service import LiveService
from myko.settings import QuerySettings
from myko.v1 import item_pb2
from myko.watermark import Watermark

TARGETS = 100_000
STREAMS = 2_000
CHANNELS = 20
LOAD = Path(__file__).with_name("watch_load.py")


def _events(topic: str, zones: int) -> list[item_pb2.Event]:
    ts = timestamp_pb2.Timestamp(seconds=1_700_000_000)
    out = []
    for z in range(zones):
        zone = entities_pb2.Zone(name=f"zone {z}")
        zone.item.id, zone.item.type, zone.item.version = f"z{z}", "targets.v1.Zone", 1
        out.append(set_event(zone, tx="", ts=ts, source="test"))
    for i in range(TARGETS):
        t = entities_pb2.Target(
            name=f"target {i:06d}",
            status=entities_pb2.TARGET_STATUS_ACTIVE,
            score=float(i % 7),
            zone_id=f"z{i % zones}",
        )
        t.item.id, t.item.type, t.item.version = f"t{i:06d}", "targets.v1.Target", 1
        ev = set_event(t, tx="", ts=ts, source="test")
        ev.offset.CopyFrom(item_pb2.Offset(topic=topic, partition=0, offset=i))
        out.append(ev)
    return out


@pytest.mark.parametrize("zones", [20, STREAMS], ids=["100 streams per zone", "one stream per zone"])
async def test_two_thousand_watches_at_once_on_a_large_store(example_app: App, zones: int) -> None:
    settings = QuerySettings(service="query", app_module="targets", port=0)
    svc = LiveService(settings, example_app, kind=LiveKind.QUERY)
    topic = "targets.v1.Target"
    svc.store.apply_events(_events(topic, zones), Watermark({(topic, 0): TARGETS}))
    assert len(svc.store.of(entities_pb2.Target)) == TARGETS
    await svc.grpc.start()
    await svc.grpc.set_serving()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(LOAD),
            f"127.0.0.1:{svc.grpc.port}",
            str(STREAMS),
            str(CHANNELS),
            str(zones),
            "150",
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 200)
        assert proc.returncode == 0
        result = json.loads(out.decode().strip().splitlines()[-1])
        print(result)
        assert result["ended"] == {}, f"streams ended: {result['ended']}"
        assert result["first"] == STREAMS
        assert result["items_per_zone"] == {f"z{z}": TARGETS // zones for z in range(zones)}
        # One evaluation per zone, one serialised payload shared by its streams.
        assert result["same_bytes_per_zone"]
        # The clients are gone: so are their streams and evaluations.
        await eventually(lambda: svc.bus.open_streams == 0 and len(svc.hub) == 0, timeout_s=10)
    finally:
        await svc.stop()


async def test_watches_past_the_stream_limit_are_refused_and_logged(
    example_app: App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="myko.status")
    svc = LiveService(
        QuerySettings(service="query", app_module="targets", port=0, max_streams=3),
        example_app,
        kind=LiveKind.QUERY,
    )
    await svc.grpc.start()
    await svc.grpc.set_serving()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{svc.grpc.port}")
    clients = Clients(command=channel, query=channel)
    streams = [clients.watch(queries_pb2.TargetsInZone(zone_id=f"z{i}")) for i in range(3)]
    try:
        async with asyncio.timeout(10):
            for s in streams:
                await s.read()
            streams.append(clients.watch(queries_pb2.AllTargets()))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await streams[3].read()
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "MYKO_MAX_STREAMS" in (err.value.details() or "")
            # The server said why, in one line.
            (line,) = [r.getMessage() for r in caplog.records if "ended RESOURCE_EXHAUSTED" in r.getMessage()]
            assert "myko.v1.QueryBus/Watch" in line
            # A closed stream frees its place.
            streams[0].cancel()
            await eventually(lambda: svc.bus.open_streams == 2)
            again = clients.watch(queries_pb2.AllZones())
            streams.append(again)
            await again.read()
    finally:
        for s in streams:
            s.cancel()
        await channel.close(None)
        await svc.stop()
