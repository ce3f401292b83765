"""Load generator: open many Watch(TargetsInZone) streams at once, from its own process.

    python tests/watch_load.py HOST:PORT STREAMS CHANNELS ZONES TIMEOUT_S

Stream i watches zone `z{i % ZONES}` over channel i % CHANNELS. It waits until
every stream has its first emission or ended, then prints one JSON line:
how many got a first emission, how many items each zone's first result had,
whether all streams of a zone got the same bytes, how streams ended (status:
count) and the slowest first emission. Run as a separate process so the
clients' own work does not load the server's event loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import sys
import time

import grpc
from google.protobuf import any_pb2
from targets.v1 import queries_pb2

from myko.v1 import query_pb2


async def main(addr: str, streams: int, channels: int, zones: int, timeout_s: float) -> dict[str, object]:
    chans = [
        # Own connections, as separate clients would have.
        grpc.aio.insecure_channel(addr, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(channels)
    ]
    for c in chans:
        await c.channel_ready()
    first: dict[int, bytes] = {}
    first_s: list[float] = []
    ended: collections.Counter[str] = collections.Counter()
    settled = asyncio.Event()
    t0 = time.monotonic()

    def check_settled() -> None:
        if len(first) + sum(ended.values()) >= streams:
            settled.set()

    async def one(i: int) -> None:
        packed = any_pb2.Any()
        packed.Pack(queries_pb2.TargetsInZone(zone_id=f"z{i % zones}"))
        call = chans[i % channels].unary_stream(
            "/myko.v1.QueryBus/Watch",
            request_serializer=query_pb2.QueryRequest.SerializeToString,
            response_deserializer=None,
        )(query_pb2.QueryRequest(query=packed))
        try:
            async for payload in call:
                if i not in first:
                    first[i] = payload
                    first_s.append(time.monotonic() - t0)
                    check_settled()
        except grpc.aio.AioRpcError as exc:
            ended[f"{exc.code().name}: {exc.details()}"] += 1
            check_settled()

    tasks = [asyncio.create_task(one(i)) for i in range(streams)]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(settled.wait(), timeout_s)
    # Streams that got their first value must still be open a moment later.
    await asyncio.sleep(2)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for c in chans:
        await c.close(None)
    per_zone: dict[str, int] = {}
    same_bytes = True
    for z in range(min(zones, streams)):
        if z in first:
            per_zone[f"z{z}"] = len(query_pb2.QueryResult.FromString(first[z]).items)
            same_bytes &= all(first.get(i, first[z]) == first[z] for i in range(z, streams, zones))
    return {
        "streams": streams,
        "first": len(first),
        "items_per_zone": per_zone,
        "same_bytes_per_zone": same_bytes,
        "ended": dict(ended),
        "slowest_first_s": round(max(first_s, default=0.0), 1),
    }


if __name__ == "__main__":
    addr, streams, channels, zones, timeout_s = sys.argv[1:6]
    out = asyncio.run(main(addr, int(streams), int(channels), int(zones), float(timeout_s)))
    print(json.dumps(out), flush=True)
