"""Scale: the same services with many stored Targets (issue 11's memory, snapshot, index, catch-up).

Run after the latency/throughput/fan-out phases, in the same run as the floor.
The store is filled with `ImportTargets` (1,000 per command, a few in flight) up
to each size in turn; at each size we take:

- RSS of every service over its RSS before the fill, per stored Target;
- a new subscriber's snapshot: a fresh `Watch(AllTargets)` (no one else watches
  it, so it is a new evaluation) until its first emission arrives, as raw bytes
  (the client's decoding is not the server's time); then the same while another
  subscriber keeps the evaluation live (what a second browser sees);
- beside them, the raw gRPC floor of the same moment: a bare grpc.aio server
  (bench/transfer_floor.py, its own process, Myko's transfer options) sending
  one pre-built message of the snapshot's size to a bare client with the same
  channel options, timed the same way: what gRPC itself costs for those bytes;
- a `Get` with an empty filtered result (`TargetsInZone` of a zone no Target is
  in), which a declared index answers without a scan, and beside it the raw
  floor of a unary call: the same bare server answering with as many bytes;

and, at the largest size, repo_svc restarted from the topics: time to SERVING,
less the same restart timed over the near-empty topics before the fill, gives
the catch-up rate in records per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from targets.v1 import commands_pb2, entities_pb2, queries_pb2

from bench.client import CHANNEL_OPTIONS, CommandClient, WatchStream, pack
from bench.profiles import PySpy
from bench.samples import Samples
from bench.transfer_floor import FloorServer, time_floor, time_unary_floor
from myko.local.procs import ServiceProcess
from myko.v1 import query_pb2

IMPORT_BATCH = 1000
IMPORTS_IN_FLIGHT = 4
SETTLE_S = 3.0  # after the last Get, before RSS is read
_WATCH = "/myko.v1.QueryBus/Watch"
_GET = "/myko.v1.QueryBus/Get"


@dataclass
class SizeResult:
    targets: int  # stored Targets at this point (bench targets from earlier phases included)
    fill_s: float  # time to import up to this size from the previous one
    imported: int
    rss_bytes: dict[str, int]  # service -> RSS now
    snapshot: Samples = field(default_factory=Samples)  # Watch sent -> first emission received
    snapshot_bytes: int = 0
    # The same while one other subscriber keeps the evaluation live (the payload is shared).
    joining: Samples = field(default_factory=Samples)
    # A bare gRPC server streaming one message of snapshot_bytes, the same client options.
    transfer_floor: Samples = field(default_factory=Samples)
    empty_get: Samples = field(default_factory=Samples)  # Get(TargetsInZone unknown) round trip
    get_floor: Samples = field(default_factory=Samples)  # a bare gRPC unary call of the same answer's size
    probe_get: Samples = field(default_factory=Samples)  # Get(TargetById) of one existing Target
    # query_svc's own mean handling time of the timed empty Gets (its
    # myko_grpc_server_handling_seconds): the Get without the transport and the client.
    get_handling_s: float | None = None

    @property
    def imports_per_s(self) -> float:
        return self.imported / self.fill_s if self.fill_s > 0 else 0.0


@dataclass
class ScaleResult:
    rss_before: dict[str, int]
    targets_before: int
    sizes: list[SizeResult]
    restart_empty_s: float | None = None  # repo_svc restart to SERVING, near-empty topics
    restart_full_s: float | None = None  # the same at the largest size
    records_full: int = 0  # records in the entity topics at that restart (markers included)
    records_empty: int = 0
    restart_checkpoint_s: float | None = None  # the same from a checkpoint (docs/checkpoints.md)

    def rss_per_target(self, size: SizeResult, service: str) -> float:
        added = size.targets - self.targets_before
        return (size.rss_bytes[service] - self.rss_before[service]) / added if added > 0 else float("nan")

    @property
    def catch_up_per_s(self) -> float | None:
        if self.restart_full_s is None or self.restart_empty_s is None:
            return None
        extra_s = self.restart_full_s - self.restart_empty_s
        return (self.records_full - self.records_empty) / extra_s if extra_s > 0 else None


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def _records_in(bootstrap: str, topics: Sequence[str]) -> int:
    # Subscribed without a group: start() fetches the topics' metadata.
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts: list[TopicPartition] = []
        for _ in range(100):
            found = {t: consumer.partitions_for_topic(t) for t in topics}
            if all(found.values()):
                parts = [TopicPartition(t, p) for t, ps in found.items() for p in sorted(ps or ())]
                break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError(f"no partitions known for {list(topics)}")
        ends = await consumer.end_offsets(parts)
        starts = await consumer.beginning_offsets(parts)
        return sum(ends[tp] - starts[tp] for tp in parts)
    finally:
        await consumer.stop()


async def _count_targets(query: grpc.aio.Channel) -> int:
    get = query.unary_unary(
        _GET,
        request_serializer=query_pb2.QueryRequest.SerializeToString,
        response_deserializer=query_pb2.QueryResult.FromString,
    )
    result: query_pb2.QueryResult = await get(
        query_pb2.QueryRequest(query=pack(queries_pb2.AllTargets())), timeout=60.0
    )
    return len(result.items)


async def _fill(commands: CommandClient, start: int, stop: int) -> None:
    """Import Targets scale-<start>..scale-<stop-1>, IMPORTS_IN_FLIGHT commands at a time."""
    pending = iter(range(start, stop, IMPORT_BATCH))

    async def worker() -> None:
        for first in pending:
            targets = [
                commands_pb2.SetTarget(
                    id=f"scale-{i:07d}",
                    name=f"Scale target {i}",
                    status=entities_pb2.TARGET_STATUS_ACTIVE,
                    score=float(i % 1000),
                    tags=["bench", f"t{i % 16}"],
                )
                for i in range(first, min(first + IMPORT_BATCH, stop))
            ]
            await commands.execute(commands_pb2.ImportTargets(targets=targets), timeout_s=120.0)

    await asyncio.gather(*(worker() for _ in range(IMPORTS_IN_FLIGHT)))


async def _snapshot_once(query: grpc.aio.Channel) -> tuple[float, int]:
    watch = query.unary_stream(
        _WATCH, request_serializer=query_pb2.QueryRequest.SerializeToString, response_deserializer=None
    )
    t0 = time.perf_counter()
    call = watch(query_pb2.QueryRequest(query=pack(queries_pb2.AllTargets())), timeout=60.0)
    try:
        async for payload in call:
            return time.perf_counter() - t0, len(payload)
    finally:
        call.cancel()
    raise RuntimeError("AllTargets Watch ended without an emission")


# Untimed Gets before the timed ones: they warm the channel and the handler's code path.
GET_WARMUP = 5


async def timed_gets(query: grpc.aio.Channel, message: object, out: Samples, count: int) -> None:
    get = query.unary_unary(
        _GET,
        request_serializer=query_pb2.QueryRequest.SerializeToString,
        response_deserializer=query_pb2.QueryResult.FromString,
    )
    request = query_pb2.QueryRequest(query=pack(message))  # type: ignore[arg-type]
    for i in range(GET_WARMUP + count):
        t0 = time.perf_counter()
        await get(request, timeout=30.0)
        if i >= GET_WARMUP:
            out.add(time.perf_counter() - t0)


async def _get_handling(query_svc: ServiceProcess) -> tuple[float, float] | None:
    """(seconds, calls) of query_svc's Get handling so far, from its /metrics; None without metrics."""
    port = int(query_svc.env.get("MYKO_METRICS_PORT", "0"))
    if not port:
        return None

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10.0) as page:
            return str(page.read().decode())

    totals = {"sum": 0.0, "count": 0.0}
    for family in text_string_to_metric_families(await asyncio.to_thread(scrape)):
        if family.name != "myko_grpc_server_handling_seconds":
            continue
        for sample in family.samples:
            kind = sample.name.rsplit("_", 1)[-1]
            if kind in totals and sample.labels.get("method") == _GET.strip("/"):
                totals[kind] = sample.value
    return totals["sum"], totals["count"]


def _mean_between(before: tuple[float, float] | None, after: tuple[float, float] | None) -> float | None:
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


async def answer_bytes(query: grpc.aio.Channel, message: object) -> int:
    """The size of a Get's answer, as it comes over the wire."""
    get = query.unary_unary(
        _GET, request_serializer=query_pb2.QueryRequest.SerializeToString, response_deserializer=None
    )
    answer: bytes = await get(query_pb2.QueryRequest(query=pack(message)), timeout=30.0)  # type: ignore[arg-type]
    return len(answer)


async def _restart_to_serving(repo: ServiceProcess) -> float:
    await asyncio.to_thread(repo.stop, timeout_s=10.0)
    t0 = time.perf_counter()  # from the new process's start: its Python start-up is included
    repo.start()
    await asyncio.to_thread(repo.wait_healthy, timeout_s=300.0)
    return time.perf_counter() - t0


async def measure_scale(
    *,
    bootstrap: str,
    command_channel: grpc.aio.Channel,
    query_addr: str,
    services: dict[str, ServiceProcess],
    entity_topics: Sequence[str],
    sizes: Sequence[int],
    snapshots: int,
    gets: int,
    say: Callable[[str], None] = print,
    profile_dir: Path | None = None,
) -> ScaleResult:
    commands = CommandClient(command_channel)
    report = say

    async def channel() -> grpc.aio.Channel:
        ch = grpc.aio.insecure_channel(query_addr, options=CHANNEL_OPTIONS)
        await ch.channel_ready()
        return ch

    repo = services["repo"]
    report("Scale: repo_svc restart over the near-empty topics ...")
    records_empty = await _records_in(bootstrap, entity_topics)
    restart_empty_s = await _restart_to_serving(repo)
    # query_svc re-snapshots after the repo restart; wait until it answers again.
    query = await channel()
    try:
        targets_before = await _count_targets(query)
        await asyncio.sleep(1.0)  # let allocations from the earlier phases settle
        rss_before = {name: rss_bytes(svc.pid) for name, svc in services.items() if svc.pid is not None}
        out = ScaleResult(
            rss_before=rss_before,
            targets_before=targets_before,
            sizes=[],
            restart_empty_s=restart_empty_s,
            records_empty=records_empty,
        )
        stored = 0
        for size in sizes:
            report(f"Scale: importing up to {size} Targets ...")
            with contextlib.ExitStack() as profiling:
                if profile_dir is not None and size == sizes[-1]:
                    for name in ("repo", "query"):
                        pid = services[name].pid
                        assert pid is not None
                        profiling.enter_context(PySpy(pid, profile_dir / f"{name}-import-{size}.txt"))
                t0 = time.perf_counter()
                await _fill(commands, stored, size)
                fill_s = time.perf_counter() - t0
            imported, stored = size - stored, size
            # query_svc applies the imports a little after their acks: wait for all of them.
            total = await _count_targets(query)
            deadline = time.perf_counter() + 120.0
            while total < targets_before + size and time.perf_counter() < deadline:
                await asyncio.sleep(0.5)
                total = await _count_targets(query)
            # Settled: query_svc hands the heap pages its counting Gets freed back a moment
            # after them (myko/heap_trim.py); RSS is what stays, not what a Get had in flight.
            await asyncio.sleep(SETTLE_S)
            result = SizeResult(
                targets=total,
                fill_s=fill_s,
                imported=imported,
                rss_bytes={name: rss_bytes(svc.pid) for name, svc in services.items() if svc.pid is not None},
            )
            report(f"Scale: {total} Targets: {snapshots} new AllTargets subscribers, {gets} empty Gets ...")
            with contextlib.ExitStack() as profiling:
                if profile_dir is not None and size == sizes[-1]:
                    query_pid = services["query"].pid
                    assert query_pid is not None
                    profiling.enter_context(PySpy(query_pid, profile_dir / f"query-snapshots-{size}.txt"))
                for _ in range(snapshots):
                    took, size_bytes = await _snapshot_once(query)
                    result.snapshot.add(took)
                    result.snapshot_bytes = size_bytes
                keeper = WatchStream(query, queries_pb2.AllTargets())
                try:
                    await keeper.wait_emissions(1)
                    for _ in range(snapshots):
                        took, _size = await _snapshot_once(query)
                        result.joining.add(took)
                finally:
                    await keeper.close()
                if result.snapshot_bytes:
                    with FloorServer(result.snapshot_bytes) as floor:
                        await time_floor(floor.address, snapshots, result.transfer_floor)
                empty = queries_pb2.TargetsInZone(zone_id="no-such-zone")
                handled_before = await _get_handling(services["query"])
                await timed_gets(query, empty, result.empty_get, gets)
                result.get_handling_s = _mean_between(handled_before, await _get_handling(services["query"]))
                with FloorServer(await answer_bytes(query, empty)) as floor:
                    await time_unary_floor(floor.address, gets, result.get_floor)
                await timed_gets(query, queries_pb2.TargetById(id="scale-0000000"), result.probe_get, gets)
            out.sizes.append(result)
    finally:
        await query.close(None)
    report(f"Scale: repo_svc restart over {stored} imported Targets ...")
    out.records_full = await _records_in(bootstrap, entity_topics)
    out.restart_full_s = await _restart_to_serving(repo)
    report(f"Scale: repo_svc restart over {stored} imported Targets from a checkpoint ...")
    out.restart_checkpoint_s = await _restart_from_checkpoint(repo)
    return out


async def _restart_from_checkpoint(repo: ServiceProcess) -> float:
    """repo_svc with MYKO_CHECKPOINT_DIR (beside its log): a replay that writes a checkpoint
    as soon as it is done, then the timed restart from it. It keeps running so configured."""
    directory = repo.log_path.parent / "checkpoints"
    repo.env.update({"MYKO_CHECKPOINT_DIR": str(directory), "MYKO_CHECKPOINT_EVERY_RECORDS": "1"})
    await _restart_to_serving(repo)
    deadline = time.monotonic() + 300.0
    while not await asyncio.to_thread(lambda: list(directory.glob("*/*.ckpt"))):
        if time.monotonic() > deadline:
            raise RuntimeError(f"repo_svc wrote no checkpoint in {directory} within 300 s")
        await asyncio.sleep(0.5)
    return await _restart_to_serving(repo)
