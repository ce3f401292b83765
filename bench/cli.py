"""`python -m bench`: run every measurement once, print the tables, record them.

    python -m bench                 # the full run `make bench` does (about 2-3 minutes)
    python -m bench --quick         # small counts, to try changes to the bench itself
    python -m bench --no-write      # print only; leave docs/benchmarks.md alone

Starts a local Kafka (myko/local/kafka.py) unless KAFKA_BOOTSTRAP_SERVERS is
set, then repo_svc, command_svc and query_svc as processes on free ports with a
fresh topic prefix, and stops all of it at the end. Then two more such stacks,
observability ON and OFF, for the overhead (bench/overhead.py). Service logs go
to .run/bench/<prefix>/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shlex
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from bench.batch_floor import BatchFloorResult, measure_batch_floor, sample_shape
from bench.batch_throughput import BatchResult, measure_batch_throughput
from bench.client import CHANNEL_OPTIONS
from bench.cpu import CpuMeter, load_average, pids_with_argument
from bench.end_to_end import EndToEndResult, measure_end_to_end
from bench.fanout import FanoutResult, measure_fanout
from bench.fanout_mux import MuxFanoutResult, measure_fanout_mux
from bench.kafka_floor import FloorResult, measure_floor
from bench.machine import describe_machine, local_kafka_version
from bench.overhead import OtlpSink, OverheadResult, Side, measure_overhead, observability_env
from bench.profiles import PySpy, summarise
from bench.report import BenchResults, render_text, write_markdown
from bench.scale import ScaleResult, measure_scale
from bench.services import APP, MykoPorts, myko_stack
from bench.throughput import (
    ThroughputResult,
    UnaryFloorResult,
    execute_sizes,
    measure_throughput,
    measure_unary_floor,
)
from bench.transfer_floor import FloorServer
from bench.ui_scale import measure_ui_scale
from myko.local.kafka import LocalKafka
from myko.local.procs import Stack

ROOT = Path(__file__).resolve().parent.parent
# The entity the bench's commands write (RecordHits), as Myko names its topic.
TARGET_TYPE = "targets.v1.Target"


@dataclass(frozen=True, kw_only=True)
class Options:
    broker_warmup: int
    floor_count: int
    floor_warmup: int
    e2e_count: int
    e2e_warmup: int
    e2e_targets: int
    latency_rounds: int
    throughput_clients: tuple[int, ...]
    hot_clients: int
    throughput_duration_s: float
    throughput_warmup_s: float
    fanout_subscribers: tuple[int, ...]
    fanout_count: int
    fanout_warmup: int
    mux: tuple[int, int, int]  # (subscribers, distinct queries, changes); subscribers 0: skip
    overhead_rounds: int
    overhead_commands: int
    overhead_warmup: int
    partitions: int
    scale_sizes: tuple[int, ...]  # empty: no scale section
    scale_snapshots: int
    scale_gets: int
    ui_scale_targets: int  # 0: no browser measurement (bench/ui_scale.py)
    ui_scale_changes: int
    profile_dir: Path | None
    output: Path | None
    batch_senders: int = 4  # 0: no ExecuteBatch phase
    batch_size: int = 500


def _counts(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: give positive integers")
    return values


def parse_options(argv: Sequence[str] | None) -> Options:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--broker-warmup", type=int, default=500, help="unmeasured transactions before any measurement"
    )
    ap.add_argument("--floor-count", type=int, default=1000, help="raw Kafka messages per variant")
    ap.add_argument("--floor-warmup", type=int, default=100, help="unmeasured raw messages first")
    ap.add_argument("--e2e-count", type=int, default=1000, help="sequential commands measured")
    ap.add_argument("--e2e-warmup", type=int, default=100, help="unmeasured commands first")
    ap.add_argument("--e2e-targets", type=int, default=10, help="size of the watched AllTargets result")
    ap.add_argument(
        "--latency-rounds",
        type=int,
        default=4,
        help="split the floors and the end-to-end commands into this many alternating rounds, so "
        "both see the same minutes of the machine",
    )
    ap.add_argument(
        "--throughput-clients",
        type=_counts,
        default=(1, 8, 32, 64),
        help="concurrency levels, e.g. 1,8,32,64",
    )
    ap.add_argument("--hot-clients", type=int, default=64, help="clients on one hot target (0: skip)")
    ap.add_argument("--throughput-seconds", type=float, default=5.0, help="measured time per level")
    ap.add_argument("--throughput-warmup-seconds", type=float, default=1.0, help="unmeasured time per level")
    ap.add_argument(
        "--batch-senders",
        type=int,
        default=4,
        help="ExecuteBatch phase: senders, one batch in flight each (0: skip)",
    )
    ap.add_argument("--batch-size", type=int, default=500, help="ExecuteBatch phase: commands per batch")
    ap.add_argument("--fanout-subscribers", type=_counts, default=(1, 100), help="e.g. 1,100")
    ap.add_argument("--fanout-count", type=int, default=200, help="sequential commands per fan-out level")
    ap.add_argument("--fanout-warmup", type=int, default=20, help="unmeasured commands first")
    ap.add_argument(
        "--fanout-mux",
        type=_counts,
        default=(1000, 100, 30),
        metavar="N,M,CHANGES",
        help="fan-out at scale (bench/fanout_mux.py): N subscribers over M queries, CHANGES measured"
        " changes; the issue's size is 10000,100,30",
    )
    ap.add_argument("--no-fanout-mux", action="store_true", help="skip fan-out at scale")
    ap.add_argument(
        "--overhead-rounds",
        type=int,
        default=10,
        help="ON/OFF blocks for the observability overhead (0: skip)",
    )
    ap.add_argument(
        "--overhead-commands", type=int, default=100, help="sequential commands per side per block"
    )
    ap.add_argument("--overhead-warmup", type=int, default=50, help="unmeasured commands per side first")
    ap.add_argument(
        "--scale-sizes",
        type=_counts,
        default=(10_000, 100_000),
        help="stored Targets for the scale section, ascending, e.g. 10000,100000",
    )
    ap.add_argument("--no-scale", action="store_true", help="skip the scale section")
    ap.add_argument("--scale-snapshots", type=int, default=5, help="new AllTargets subscribers per size")
    ap.add_argument("--scale-gets", type=int, default=200, help="timed empty filtered Gets per size")
    ap.add_argument(
        "--ui-scale-targets",
        type=int,
        default=100_000,
        help="stored Targets for the browser measurement of the Targets page (0: skip; needs ui/dist)",
    )
    ap.add_argument("--ui-scale-changes", type=int, default=10, help="changes timed into the open page")
    ap.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="py-spy the services in chosen phases (command_svc at the most clients, query_svc at the "
        "most fan-out subscribers, repo/query_svc in the scale section) into DIR, and summarise",
    )
    ap.add_argument("--partitions", type=int, default=3, help="MYKO_TOPIC_PARTITIONS for the services")
    ap.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md", help="where to record")
    ap.add_argument("--no-write", action="store_true", help="print only, do not update --output")
    ap.add_argument("--quick", action="store_true", help="small counts (not for the record)")
    a = ap.parse_args(argv)
    if a.quick:
        a.broker_warmup, a.floor_count, a.floor_warmup, a.e2e_count, a.e2e_warmup = 100, 200, 20, 200, 20
        a.throughput_seconds, a.throughput_warmup_seconds = 2.0, 0.5
        a.fanout_count, a.fanout_warmup = 50, 5
        a.fanout_mux = (200, 20, 10)
        a.overhead_rounds, a.overhead_commands, a.overhead_warmup = 4, 25, 10
        a.scale_sizes, a.scale_snapshots, a.scale_gets = (2_000, 10_000), 3, 50
        a.ui_scale_targets, a.ui_scale_changes = min(a.ui_scale_targets, 10_000), 5
    if a.latency_rounds < 1:
        ap.error("--latency-rounds must be at least 1")
    if len(a.fanout_mux) != 3:
        ap.error("--fanout-mux takes N,M,CHANGES")
    if list(a.scale_sizes) != sorted(set(a.scale_sizes)):
        ap.error("--scale-sizes must be ascending")
    return Options(
        broker_warmup=a.broker_warmup,
        floor_count=a.floor_count,
        floor_warmup=a.floor_warmup,
        e2e_count=a.e2e_count,
        e2e_warmup=a.e2e_warmup,
        e2e_targets=a.e2e_targets,
        latency_rounds=a.latency_rounds,
        throughput_clients=a.throughput_clients,
        hot_clients=a.hot_clients,
        throughput_duration_s=a.throughput_seconds,
        throughput_warmup_s=a.throughput_warmup_seconds,
        fanout_subscribers=a.fanout_subscribers,
        fanout_count=a.fanout_count,
        fanout_warmup=a.fanout_warmup,
        mux=(0, 0, 0) if a.no_fanout_mux else a.fanout_mux,
        overhead_rounds=a.overhead_rounds,
        overhead_commands=a.overhead_commands,
        overhead_warmup=a.overhead_warmup,
        partitions=a.partitions,
        scale_sizes=() if a.no_scale else a.scale_sizes,
        scale_snapshots=a.scale_snapshots,
        scale_gets=a.scale_gets,
        ui_scale_targets=0 if a.no_scale else a.ui_scale_targets,
        ui_scale_changes=a.ui_scale_changes,
        profile_dir=a.profile,
        output=None if a.no_write or a.quick else a.output,
        batch_senders=a.batch_senders,
        batch_size=a.batch_size,
    )


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class _Measured:
    floor_txn: FloorResult
    floor_myko_shape: FloorResult
    floor_plain: FloorResult
    e2e: EndToEndResult
    round_ratios: list[float]
    throughput: list[ThroughputResult]
    fanout: list[FanoutResult]
    scale: ScaleResult | None
    batch: list[BatchResult]
    fanout_mux: MuxFanoutResult | None = None
    unary_floor: list[UnaryFloorResult] = field(default_factory=list)
    batch_floor: BatchFloorResult | None = None


async def _measure_latency(
    opts: Options,
    *,
    bootstrap: str,
    command_channel: grpc.aio.Channel,
    query_channel: grpc.aio.Channel,
    target_topic: str,
    meter: CpuMeter,
) -> tuple[FloorResult, FloorResult, FloorResult, EndToEndResult, list[float]]:
    """The three floors and the sequential end to end, in alternating rounds.

    Target 1 is a ratio of two medians; taken minutes apart on a shared machine,
    a change of load between them moved it by 2x. Alternating short rounds puts
    both sides of the ratio in the same minutes. The floors run with the services
    up and idle (nothing else is measured meanwhile).
    """
    rounds = opts.latency_rounds
    floors: list[list[FloorResult]] = [[], [], []]
    e2e_parts: list[EndToEndResult] = []
    for r in range(rounds):
        share = _share(opts.floor_count, rounds, r)
        # The first round warms each variant up fully; later rounds only their fresh topic.
        warmup = opts.floor_warmup if r == 0 else min(opts.floor_warmup, 20)
        _say(f"Latency round {r + 1}/{rounds}: Kafka floors, {share} messages each ...")
        for i, (transactional, tx_log) in enumerate(((True, False), (True, True), (False, False))):
            floors[i].append(
                await measure_floor(
                    bootstrap, transactional=transactional, tx_log_record=tx_log, count=share, warmup=warmup
                )
            )
        commands = _share(opts.e2e_count, rounds, r)
        _say(f"Latency round {r + 1}/{rounds}: Myko end to end, {commands} sequential commands ...")
        e2e_parts.append(
            await measure_end_to_end(
                command_channel=command_channel,
                query_channel=query_channel,
                bootstrap=bootstrap,
                target_topic=target_topic,
                partitions=opts.partitions,
                targets=opts.e2e_targets,
                count=commands,
                warmup=opts.e2e_warmup if r == 0 else min(opts.e2e_warmup, 20),
                meter=meter,
            )
        )
    txn, shaped, plain = (FloorResult.combined(parts) for parts in floors)
    # Target 1's ratio within each round: how much of its spread is the machine's.
    ratios = [
        e.send_to_emission.p50 / f.produce_to_consume.p50 for f, e in zip(floors[0], e2e_parts, strict=True)
    ]
    return txn, shaped, plain, EndToEndResult.combined(e2e_parts), ratios


def _share(total: int, rounds: int, r: int) -> int:
    """Round r's part of `total`, the remainder spread over the first rounds."""
    return total // rounds + (1 if r < total % rounds else 0)


async def _measure(
    opts: Options,
    *,
    bootstrap: str,
    stack: Stack,
    ports: MykoPorts,
    topic_prefix: str,
    kafka_pid: int | None,
) -> _Measured:
    # The floor is taken with the services up and idle: the same broker, machine and
    # background fetches the Myko measurements below run with.
    # A fresh broker's first thousand or so transactions are markedly slower (JIT,
    # coordinator state); without this the first variant measured pays for it.
    _say(f"Warming up the broker: {opts.broker_warmup} transactions ...")
    await measure_floor(bootstrap, transactional=True, count=0, warmup=opts.broker_warmup)
    command_addr = f"127.0.0.1:{ports.command}"
    query_addr = f"127.0.0.1:{ports.query}"
    pids = {svc.name: svc.pid for svc in stack.services} | {"kafka": kafka_pid, "bench": os.getpid()}
    meter = CpuMeter({name: pid for name, pid in pids.items() if pid is not None})
    command_channel = grpc.aio.insecure_channel(command_addr, options=CHANNEL_OPTIONS)
    query_channel = grpc.aio.insecure_channel(query_addr, options=CHANNEL_OPTIONS)
    try:
        floor_txn, floor_myko_shape, floor_plain, e2e, round_ratios = await _measure_latency(
            opts,
            bootstrap=bootstrap,
            command_channel=command_channel,
            query_channel=query_channel,
            target_topic=topic_prefix + TARGET_TYPE,
            meter=meter,
        )
        throughput, unary_floor = await _measure_throughput(opts, stack, command_addr, meter)
        batch, batch_floor = await _measure_batches(
            opts, stack, command_addr, meter, bootstrap=bootstrap, topic_prefix=topic_prefix
        )
        fanout: list[FanoutResult] = []
        for run, subscribers in enumerate(opts.fanout_subscribers):
            _say(f"Fan-out: {subscribers} subscribers, {opts.fanout_count} commands ...")
            profiled = subscribers == max(opts.fanout_subscribers)
            with _profiling(opts, stack, "query", f"query-fanout-{subscribers}.txt", profiled):
                fanout.append(
                    await measure_fanout(
                        command_channel=command_channel,
                        query_addr=query_addr,
                        meter=meter,
                        subscribers=subscribers,
                        count=opts.fanout_count,
                        warmup=opts.fanout_warmup,
                        run_id=str(run),
                    )
                )
        fanout_mux = None
        if opts.mux[0]:
            subscribers, queries, changes = opts.mux
            fanout_mux = await measure_fanout_mux(
                command_channel=command_channel,
                query_addr=query_addr,
                meter=meter,
                subscribers=subscribers,
                queries=queries,
                changes=changes,
                warmup=max(1, changes // 6),
                run_id="mux",
                say=_say,
            )
        scale = None
        if opts.scale_sizes:
            # Last: it fills the store and restarts repo_svc.
            scale = await measure_scale(
                bootstrap=bootstrap,
                command_channel=command_channel,
                query_addr=query_addr,
                services={svc.name: svc for svc in stack.services},
                entity_topics=[topic_prefix + TARGET_TYPE, f"{topic_prefix}targets.v1.Zone"],
                sizes=opts.scale_sizes,
                snapshots=opts.scale_snapshots,
                gets=opts.scale_gets,
                say=_say,
                profile_dir=opts.profile_dir,
            )
    finally:
        await command_channel.close(None)
        await query_channel.close(None)
    return _Measured(
        floor_txn,
        floor_myko_shape,
        floor_plain,
        e2e,
        round_ratios,
        throughput,
        fanout,
        scale,
        batch,
        fanout_mux,
        unary_floor,
        batch_floor,
    )


async def _measure_throughput(
    opts: Options, stack: Stack, command_addr: str, meter: CpuMeter
) -> tuple[list[ThroughputResult], list[UnaryFloorResult]]:
    """Each level of concurrent single Execute, and right after each (not the hot one) the raw
    gRPC unary floor at the same clients, so both see the same minutes of the machine."""
    levels = [(n, False) for n in opts.throughput_clients]
    if opts.hot_clients:
        levels.append((opts.hot_clients, True))
    throughput: list[ThroughputResult] = []
    floors: list[UnaryFloorResult] = []
    sizes = await execute_sizes(command_addr, run_id="s")
    with FloorServer(sizes.reply) as server:
        floor_meter = meter.including("floor", server.pid)
        for run, (clients, hot) in enumerate(levels):
            _say(f"Throughput: {clients} clients{' on one hot target' if hot else ''} ...")
            profiled = not hot and clients == max(opts.throughput_clients)
            with _profiling(opts, stack, "command", f"command-{clients}clients.txt", profiled):
                throughput.append(
                    await measure_throughput(
                        command_addr,
                        clients=clients,
                        hot=hot,
                        duration_s=opts.throughput_duration_s,
                        warmup_s=opts.throughput_warmup_s,
                        run_id=str(run),
                        meter=meter,
                    )
                )
            if hot:
                continue
            _say(f"Throughput floor: {clients} clients on a bare grpc.aio server ...")
            floors.append(
                await measure_unary_floor(
                    server.address,
                    clients=clients,
                    sizes=sizes,
                    duration_s=opts.throughput_duration_s,
                    warmup_s=opts.throughput_warmup_s,
                    meter=floor_meter,
                )
            )
    return throughput, floors


async def _measure_batches(
    opts: Options, stack: Stack, command_addr: str, meter: CpuMeter, *, bootstrap: str, topic_prefix: str
) -> tuple[list[BatchResult], BatchFloorResult | None]:
    """ExecuteBatch throughput (bench/batch_throughput.py): spread, then its raw Kafka floor
    (bench/batch_floor.py) with the records the spread run wrote, then one hot target."""
    out: list[BatchResult] = []
    floor = None
    for hot in (False, True) if opts.batch_senders else ():
        _say(
            f"ExecuteBatch: {opts.batch_senders} senders x {opts.batch_size}{' on one hot target' if hot else ''} ..."
        )
        with _profiling(opts, stack, "command", "command-batch.txt", not hot):
            out.append(
                await measure_batch_throughput(
                    command_addr,
                    senders=opts.batch_senders,
                    batch_size=opts.batch_size,
                    hot=hot,
                    duration_s=opts.throughput_duration_s,
                    warmup_s=opts.throughput_warmup_s,
                    run_id=f"b{int(hot)}",
                    meter=meter,
                )
            )
        if hot:
            continue
        _say(f"ExecuteBatch floor: bare aiokafka, {opts.batch_senders} senders x {opts.batch_size} ...")
        shape = await sample_shape(bootstrap, app=APP, topic_prefix=topic_prefix, entity_type=TARGET_TYPE)
        floor = await measure_batch_floor(
            bootstrap,
            shape=shape,
            partitions=opts.partitions,
            senders=opts.batch_senders,
            batch_size=opts.batch_size,
            duration_s=opts.throughput_duration_s,
            warmup_s=opts.throughput_warmup_s,
            meter=meter,
        )
    return out, floor


def _profiling(
    opts: Options, stack: Stack, service: str, name: str, wanted: bool
) -> contextlib.AbstractContextManager[object]:
    if opts.profile_dir is None or not wanted:
        return contextlib.nullcontext()
    pid = stack.by_name(service).pid
    assert pid is not None
    return PySpy(pid, opts.profile_dir / name)


def _run_services(opts: Options, *, bootstrap: str, kafka_pid: int | None) -> _Measured:
    """Start the services, measure everything, stop the services (also on failure)."""
    topic_prefix = f"bench{uuid.uuid4().hex[:8]}."
    log_dir = ROOT / ".run" / "bench" / topic_prefix.rstrip(".")
    stack, ports = myko_stack(
        bootstrap_servers=bootstrap, topic_prefix=topic_prefix, log_dir=log_dir, partitions=opts.partitions
    )
    _say(f"Starting repo_svc, command_svc, query_svc (logs in {log_dir}) ...")
    with stack:
        return asyncio.run(
            _measure(
                opts,
                bootstrap=bootstrap,
                stack=stack,
                ports=ports,
                topic_prefix=topic_prefix,
                kafka_pid=kafka_pid,
            )
        )


def _run_overhead(opts: Options, *, bootstrap: str) -> OverheadResult | None:
    """Two stacks at once, observability ON and OFF, and an OTLP receiver for the ON one."""
    if opts.overhead_rounds < 1:
        return None
    run_id = uuid.uuid4().hex[:8]
    log_dir = ROOT / ".run" / "bench" / f"overhead{run_id}"
    with OtlpSink(log_dir / "otlp_sink.log") as sink:
        stacks = {
            on: myko_stack(
                bootstrap_servers=bootstrap,
                topic_prefix=f"bench{run_id}{'on' if on else 'off'}.",
                log_dir=log_dir / ("on" if on else "off"),
                partitions=opts.partitions,
                extra_env=observability_env(on, otlp_port=sink.port),
                metrics=on,
            )
            for on in (False, True)
        }
        _say(f"Observability overhead: two stacks, ON and OFF (logs in {log_dir}) ...")
        with stacks[False][0], stacks[True][0]:
            sides = {
                on: Side(
                    "on" if on else "off",
                    f"127.0.0.1:{ports.command}",
                    f"127.0.0.1:{ports.query}",
                    metrics_ports=ports.metrics,
                )
                for on, (_, ports) in stacks.items()
            }
            _say(
                f"Observability overhead: {opts.overhead_rounds} rounds of {opts.overhead_commands}"
                " commands per side, interleaved ..."
            )
            off, on, load_before, load_after = asyncio.run(
                measure_overhead(
                    sides,
                    rounds=opts.overhead_rounds,
                    per_round=opts.overhead_commands,
                    warmup=opts.overhead_warmup,
                )
            )
        # After the ON stack stopped: it flushes its last spans on the way out.
        spans = sink.stop()
    return OverheadResult(
        off=off,
        on=on,
        rounds=opts.overhead_rounds,
        per_round=opts.overhead_commands,
        spans_exported=spans,
        load_before=load_before,
        load_after=load_after,
    )


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_options(argv)
    # aiokafka logs retried metadata races on fresh topics as warnings; they are harmless here.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    began = time.perf_counter()
    load_at_start = load_average()
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    kafka = None if external else LocalKafka()
    try:
        if kafka is None:
            bootstrap, kafka_version, kafka_pid = external, f"external ({external})", None
        else:
            _say("Starting a local Kafka ...")
            kafka.start()
            bootstrap = kafka.bootstrap_servers
            kafka_version = local_kafka_version() + " (single node, KRaft)"
            # Our broker's JVM, found by its private data directory, so its CPU is counted apart.
            pids = pids_with_argument(str(kafka.data_dir))
            kafka_pid = pids[0] if len(pids) == 1 else None
        measured = _run_services(opts, bootstrap=bootstrap, kafka_pid=kafka_pid)
        ui_scale = None
        if opts.ui_scale_targets:
            ui_scale = measure_ui_scale(
                bootstrap=bootstrap, targets=opts.ui_scale_targets, changes=opts.ui_scale_changes, say=_say
            )
        overhead = _run_overhead(opts, bootstrap=bootstrap)
    finally:
        if kafka is not None:
            _say("Stopping Kafka ...")
            kafka.stop()
    args = " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    results = BenchResults(
        machine=describe_machine(kafka=kafka_version, load_at_start=load_at_start),
        command="make bench" + (f" ARGS={shlex.quote(args)}" if args else ""),
        duration_s=time.perf_counter() - began,
        floor_txn=measured.floor_txn,
        floor_myko_shape=measured.floor_myko_shape,
        floor_plain=measured.floor_plain,
        e2e=measured.e2e,
        round_ratios=measured.round_ratios,
        throughput=measured.throughput,
        fanout=measured.fanout,
        overhead=overhead,
        scale=measured.scale,
        batch=measured.batch,
        ui_scale=ui_scale,
        fanout_mux=measured.fanout_mux,
        unary_floor=measured.unary_floor,
        batch_floor=measured.batch_floor,
    )
    print(render_text(results), flush=True)
    if opts.profile_dir is not None:
        for path in sorted(opts.profile_dir.glob("*.txt")):
            print("\n" + "\n".join(summarise(path)), flush=True)
    if opts.output is not None:
        write_markdown(opts.output, results)
        _say(f"Recorded in {opts.output}")
    return 0
