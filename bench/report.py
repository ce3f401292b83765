"""The benchmark's tables: printed to the terminal and recorded in docs/benchmarks.md.

The recorded block sits between two markers, so prose written around it in
docs/benchmarks.md (how to read the numbers, findings) survives a new run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import fanout_mux
from bench.batch_floor import BatchFloorResult
from bench.batch_throughput import BATCH_HEAD, BatchResult, batch_rows
from bench.cpu import CpuUse
from bench.end_to_end import EndToEndResult
from bench.fanout import FanoutResult
from bench.fanout_mux import MuxFanoutResult
from bench.kafka_floor import FloorResult
from bench.machine import Machine
from bench.overhead import SCRAPE_INTERVAL_S, TARGET_PCT, OverheadResult
from bench.samples import Samples
from bench.scale import GET_WARMUP, ScaleResult
from bench.throughput import ThroughputResult, UnaryFloorResult
from bench.ui_scale import UiScaleResult
from bench.ui_scale import render_notes as ui_scale_notes
from bench.ui_scale import render_rows as ui_scale_rows

BEGIN = "<!-- bench:results:begin (written by `make bench`; edits inside are replaced) -->"
END = "<!-- bench:results:end -->"
TARGET_RATIO = 4.0

_DOC_HEAD = """# Benchmarks

`make bench` (`python -m bench`, options: `python -m bench --help`) measures, in one
run on one broker, the raw Kafka floor and Myko on top of it, and records the
result below. It is not a test: numbers vary with the machine and its load.

"""


@dataclass
class BenchResults:
    machine: Machine
    command: str
    floor_txn: FloorResult
    floor_myko_shape: FloorResult
    floor_plain: FloorResult
    e2e: EndToEndResult
    throughput: list[ThroughputResult]
    fanout: list[FanoutResult]
    duration_s: float
    overhead: OverheadResult | None = None
    scale: ScaleResult | None = None
    batch: list[BatchResult] = field(default_factory=list)
    ui_scale: UiScaleResult | None = None
    fanout_mux: MuxFanoutResult | None = None
    # send -> emission p50 / floor p50 within each alternating latency round
    round_ratios: list[float] = field(default_factory=list)
    # The raw floors of the throughput phases, measured beside them.
    unary_floor: list[UnaryFloorResult] = field(default_factory=list)
    batch_floor: BatchFloorResult | None = None


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.2f}"


def _ratio(value: float, floor: float) -> str:
    if math.isnan(value) or math.isnan(floor) or floor <= 0:
        return "-"
    return f"{value / floor:.1f}x"


def _latency_rows(r: BenchResults) -> list[list[str]]:
    txn, plain = r.floor_txn.produce_to_consume, r.floor_plain.produce_to_consume

    def row(label: str, s: Samples) -> list[str]:
        return [
            label,
            str(len(s)),
            _ms(s.p50),
            _ms(s.p99),
            _ratio(s.p50, txn.p50),
            _ratio(s.p99, txn.p99),
            _ratio(s.p50, plain.p50),
        ]

    e = r.e2e
    return [
        row("Kafka floor: txn send -> read_committed consume [FLOOR]", txn),
        row("Kafka floor: txn send -> commit acknowledged", r.floor_txn.produce_ack),
        row("Kafka txn shaped like Myko's (event + tx-log record)", r.floor_myko_shape.produce_to_consume),
        row("Kafka plain: produce -> consume (reference)", plain),
        row("Kafka plain: produce acknowledged", r.floor_plain.produce_ack),
        row("Myko: rejected command round trip (gRPC, no Kafka)", e.rejected),
        row("Myko: command send -> ack", e.command),
        row("Myko: command ack -> query emission", e.ack_to_emission),
        row("Myko: command send -> query emission (end to end)", e.send_to_emission),
        # Other commands than the rows above: the probe that splits them is a reader of its own.
        row("  breakdown (other commands, probe on): send -> event readable in Kafka", e.send_to_kafka),
        row("  breakdown (other commands, probe on): readable in Kafka -> ack", e.kafka_to_ack),
        row("  breakdown (other commands, probe on): readable in Kafka -> emission", e.kafka_to_emission),
        row("  breakdown (other commands, probe on): send -> emission", e.send_to_emission_probed),
    ]


_LATENCY_HEAD = ["Measure", "n", "p50 ms", "p99 ms", "p50 / floor", "p99 / floor p99", "p50 / plain"]


def _throughput_rows(r: BenchResults) -> list[list[str]]:
    floor = r.floor_txn.produce_to_consume.p50
    rows = []
    for t in r.throughput:
        rows.append(
            [
                str(t.clients),
                "1 hot target" if t.hot else "own target each",
                str(t.commands),
                f"{t.elapsed_s:.1f}",
                f"{t.per_second:.0f}",
                _ms(t.latency.p50),
                _ms(t.latency.p99),
                _ratio(t.latency.p50, floor),
                str(t.errors),
                "-" if t.lost_updates is None else str(t.lost_updates),
            ]
        )
    return rows


_THROUGHPUT_HEAD = [
    "Clients",
    "Targets",
    "Commands",
    "Seconds",
    "Commands/s",
    "p50 ms",
    "p99 ms",
    "p50 / floor",
    "Errors",
    "Lost updates",
]


def _cpu_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _myko_cpu_ms(cpu: CpuUse | None, name: str, commands: int) -> str:
    if cpu is None or not commands or name not in cpu.seconds:
        return "-"
    return f"{1000 * cpu.seconds[name] / commands:.3f}"


def _other_pct(cpu: CpuUse | None) -> str:
    """What the rest of the machine took meanwhile (% of one core): a floor's competition."""
    if cpu is None or not cpu.wall_s or "other" not in cpu.seconds:
        return "-"
    return f"{100 * cpu.seconds['other'] / cpu.wall_s:.0f}"


def _rate_ratio(myko: float, floor: float) -> str:
    return f"{myko / floor:.2f}" if floor > 0 else "-"


def _unary_floor_rows(r: BenchResults) -> list[list[str]]:
    myko = {t.clients: t for t in r.throughput if not t.hot}
    rows = []
    for f in r.unary_floor:
        t = myko.get(f.clients)
        rows.append(
            [
                str(f.clients),
                str(f.calls),
                f"{f.elapsed_s:.1f}",
                f"{f.per_second:.0f}",
                _ms(f.latency.p50),
                _ms(f.latency.p99),
                str(f.errors),
                _cpu_ms(f.cpu_ms_per_call("floor")),
                _cpu_ms(f.cpu_ms_per_call("bench")),
                _other_pct(f.cpu),
                "-" if t is None else f"{t.per_second:.0f}",
                "-" if t is None else _rate_ratio(t.per_second, f.per_second),
                "-" if t is None else _myko_cpu_ms(t.cpu, "command", t.commands),
                "-" if t is None else _myko_cpu_ms(t.cpu, "bench", t.commands),
            ]
        )
    return rows


_UNARY_FLOOR_HEAD = [
    "Clients",
    "Calls",
    "Seconds",
    "Calls/s",
    "p50 ms",
    "p99 ms",
    "Errors",
    "server ms CPU/call",
    "bench ms CPU/call",
    "other %",
    "Myko commands/s",
    "Myko / floor",
    "Myko command ms CPU/cmd",
    "Myko bench ms CPU/cmd",
]


def _unary_floor_notes(r: BenchResults) -> list[str]:
    if not r.unary_floor:
        return []
    sizes = r.unary_floor[0].sizes
    return [
        "Raw gRPC unary floor: a bare grpc.aio server in its own process (bench/transfer_floor.py: no Myko "
        f"code, no (de)serializers, no Kafka) answering {sizes.reply} B to requests of {sizes.request} B "
        "(an Execute of RecordHits' reply and request, measured in this run), driven as the Myko rows are "
        "(each client its own channel, one call in flight), right after the Myko level of as many clients. "
        "server: the bare server's CPU; bench: this process's (the clients); other %: the rest of the machine "
        "meanwhile, % of one core (services, broker and anything else); Myko / floor: commands/s over calls/s."
    ]


def _batch_floor_rows(r: BenchResults) -> list[list[str]]:
    f = r.batch_floor
    if f is None:
        return []
    myko = [b for b in r.batch if not b.hot and (b.senders, b.batch_size) == (f.senders, f.batch_size)]
    b = myko[0] if myko else None
    return [
        [
            f"{f.senders} x {f.batch_size}",
            str(f.readers),
            str(f.commands),
            f"{f.elapsed_s:.1f}",
            f"{f.per_second:.0f}",
            f"{f.commands_per_transaction:.0f}",
            _ms(f.latency.p50),
            _ms(f.latency.p99),
            _cpu_ms(f.cpu_ms_per_command("kafka")),
            _cpu_ms(f.cpu_ms_per_command("bench")),
            _other_pct(f.cpu),
            "-" if b is None else f"{b.per_second:.0f}",
            "-" if b is None else _rate_ratio(b.per_second, f.per_second),
            "-" if b is None else _myko_cpu_ms(b.cpu, "kafka", b.commands),
        ]
    ]


_BATCH_FLOOR_HEAD = [
    "Senders x batch",
    "Readers",
    "Commands",
    "Seconds",
    "Commands/s",
    "Commands/txn",
    "batch p50 ms",
    "batch p99 ms",
    "kafka ms CPU/cmd",
    "bench ms CPU/cmd",
    "other %",
    "Myko commands/s",
    "Myko / floor",
    "Myko kafka ms CPU/cmd",
]


def _batch_floor_notes(r: BenchResults) -> list[str]:
    f = r.batch_floor
    if f is None:
        return []
    shape = f.shape
    return [
        "Raw Kafka floor of ExecuteBatch (bench/batch_floor.py): aiokafka alone, with Myko's producer and reader "
        f"settings, writing per command what Myko wrote in this run: one event ({shape.event.size} B with key and "
        f"headers) on the {shape.entity_type} topic ({f.partitions} partitions) and one tx-log record "
        f"({shape.txlog.size} B); all commands pending when a round starts (up to {f.max_group}) in one "
        "transaction, the next round once the command-side reader has read it back (as command_svc's writer); "
        f"{f.readers} bare read_committed readers without a group, as command_svc's and repo_svc's. A batch counts "
        "once its transactions are committed and every reader has read them. kafka: the broker's CPU; bench: this "
        "process's (the senders, the producer and the readers); other %: the rest of the machine meanwhile.",
        f"Its rounds (the whole run, warm-up included): {len(f.commit)} transactions, commit p50 {_ms(f.commit.p50)} "
        f"ms (from the round's start: its records sent and the transaction committed; of it, handing the records "
        f"to aiokafka's producer p50 {_ms(f.send.p50)} ms), read back p50 {_ms(f.read_back.p50)} ms (then until "
        "the command-side reader was past them).",
    ]


def _fanout_rows(r: BenchResults) -> list[list[str]]:
    return [
        [
            str(f.subscribers),
            str(f.commands),
            _ms(f.first_subscriber.p50),
            _ms(f.first_subscriber.p99),
            _ms(f.last_subscriber.p50),
            _ms(f.last_subscriber.p99),
        ]
        for f in r.fanout
    ]


_FANOUT_HEAD = [
    "Subscribers",
    "Commands",
    "ack -> first p50 ms",
    "ack -> first p99 ms",
    "ack -> last p50 ms",
    "ack -> last p99 ms",
]


_CPU_NAMES = ("command", "repo", "query", "kafka", "bench", "other")
_CPU_HEAD = ["Phase", *(f"{n} %" for n in _CPU_NAMES), *(f"{n} ms/cmd" for n in _CPU_NAMES)]


def _cpu_rows(r: BenchResults) -> list[list[str]]:
    phases: list[tuple[str, CpuUse | None, int]] = [("sequential end to end", r.e2e.cpu, len(r.e2e.command))]
    phases += [
        (f"throughput, {t.clients} clients{' hot' if t.hot else ''}", t.cpu, t.commands) for t in r.throughput
    ]
    phases += [(f"fan-out, {f.subscribers} subscribers", f.cpu, f.commands) for f in r.fanout]
    rows = []
    for label, cpu, ops in phases:
        if cpu is None or ops == 0:
            continue
        # "-" for a process not measured (an external Kafka is not ours to read).
        pct = [f"{100 * cpu.seconds[n] / cpu.wall_s:.0f}" if n in cpu.seconds else "-" for n in _CPU_NAMES]
        per = [f"{1000 * cpu.seconds[n] / ops:.2f}" if n in cpu.seconds else "-" for n in _CPU_NAMES]
        rows.append([label, *pct, *per])
    return rows


_SCALE_SERVICES = ("repo", "command", "query")
_SCALE_HEAD = [
    "Targets stored",
    "import/s",
    "new subscriber p50 ms",
    "max ms",
    "joining p50 ms",
    "snapshot MB",
    "raw gRPC floor p50 ms",
    "empty filtered Get p50 ms",
    "raw gRPC unary floor p50 ms",
    "query_svc Get handling mean ms",
    "Get by id p50 ms",
    *(f"{n} B/Target" for n in _SCALE_SERVICES),
]


def _scale_rows(r: BenchResults) -> list[list[str]]:
    s = r.scale
    if s is None:
        return []
    return [
        [
            str(z.targets),
            f"{z.imports_per_s:.0f}",
            _ms(z.snapshot.p50),
            _ms(max(z.snapshot.values, default=math.nan)),
            _ms(z.joining.p50),
            f"{z.snapshot_bytes / 1e6:.1f}",
            _ms(z.transfer_floor.p50),
            _ms(z.empty_get.p50),
            _ms(z.get_floor.p50),
            _ms(z.get_handling_s) if z.get_handling_s is not None else "-",
            _ms(z.probe_get.p50),
            *(f"{s.rss_per_target(z, n):.0f}" if n in z.rss_bytes else "-" for n in _SCALE_SERVICES),
        ]
        for z in s.sizes
    ]


def _scale_notes(r: BenchResults) -> list[str]:
    s = r.scale
    if s is None:
        return []
    notes = [
        "New subscriber: a fresh Watch(AllTargets) (a new evaluation) until its first emission's bytes "
        "arrive, client decoding excluded; joining: the same while another subscriber keeps it live. Raw gRPC floor: "
        "a bare grpc.aio server (own process, no Myko code) streaming one pre-built message of the snapshot's "
        "size to a bare client with the same channel options, timed the same way, right after (what gRPC "
        "itself costs for those bytes here; bench/transfer_floor.py). Empty filtered Get: Get(TargetsInZone) of a zone no Target is "
        "in, round trip; raw gRPC unary floor: the same bare server answering a unary call with as many bytes, "
        "timed the same way (what a Get costs in gRPC alone here); query_svc Get handling: the mean time its status wrapper spent on those Gets "
        f"(and {GET_WARMUP} warm-ups), from its own myko_grpc_server_handling_seconds. B/Target: RSS "
        f"growth over the {s.targets_before} Targets stored before the fill, per added Target.",
    ]
    if s.restart_full_s is not None and s.restart_empty_s is not None:
        rate = s.catch_up_per_s
        notes.append(
            f"repo_svc restart to SERVING: {s.restart_empty_s:.1f} s over {s.records_empty} records, "
            f"{s.restart_full_s:.1f} s over {s.records_full} (entity topics, transaction markers included): "
            + (
                f"catch-up ~{rate:,.0f} records/s beyond start-up."
                if rate
                else "no measurable catch-up time."
            )
        )
    if s.restart_checkpoint_s is not None:
        notes.append(
            f"repo_svc restart to SERVING from a checkpoint (docs/checkpoints.md) over the same topics: "
            f"{s.restart_checkpoint_s:.1f} s ({s.records_full / s.restart_checkpoint_s:,.0f} records/s of the "
            "topics, effective); `python -m bench.catch_up --targets 1000000` measures 1M."
        )
    return notes


def _issue11_rows(r: BenchResults) -> list[list[str]]:
    """Issue 11's targets with this run's figure beside the issue's "Now"."""
    floor = r.floor_txn.produce_to_consume.p50
    rows = [
        ["send -> emission p50 / floor", "2.5x", _ratio(r.e2e.send_to_emission.p50, floor), "<= 2.0x"],
    ]
    at64 = [t for t in r.throughput if t.clients == 64 and not t.hot]
    if at64:
        rows.append(
            ["commands/s, 64 clients, single Execute", "~2,400", f"{at64[0].per_second:.0f}", ">= 5,000"]
        )
        rows += [
            ["  raw gRPC unary floor, 64 clients (calls/s)", "-", f"{f.per_second:.0f}", "-"]
            for f in r.unary_floor
            if f.clients == 64
        ]
    spread = [b for b in r.batch if not b.hot]
    if spread:
        rows.append(
            [
                f"commands/s, ExecuteBatch ({spread[0].senders} x {spread[0].batch_size})",
                "-",
                f"{spread[0].per_second:.0f}",
                ">= 20,000",
            ]
        )
        if r.batch_floor is not None:
            rows.append(
                [
                    "  raw Kafka floor, the same batches (commands/s)",
                    "-",
                    f"{r.batch_floor.per_second:.0f}",
                    "-",
                ]
            )
    per_change = [
        (f.subscribers, 1e6 * f.cpu.seconds.get("query", 0.0) / f.commands)
        for f in r.fanout
        if f.cpu is not None and f.commands
    ]
    if len(per_change) >= 2 and per_change[-1][0] > per_change[0][0]:
        (n0, us0), (n1, us1) = per_change[0], per_change[-1]
        rows.append(
            [
                "query_svc CPU per change per extra subscriber",
                "~28 us",
                f"{(us1 - us0) / (n1 - n0):.0f} us",
                "<= 10 us",
            ]
        )
    if r.fanout_mux is not None:
        rows += fanout_mux.issue11_rows(r.fanout_mux)
    s = r.scale
    if s is not None and s.sizes:
        now_rss = {"repo": "~3.3 KB", "query": "~2.3 KB", "command": "~3.7 KB"}
        big = s.sizes[-1]
        for n in _SCALE_SERVICES:
            if n in big.rss_bytes:
                rows.append(
                    [
                        f"RSS per Target, {n}_svc, at {big.targets}",
                        now_rss[n],
                        f"{s.rss_per_target(big, n):.0f} B",
                        "<= 1 KB",
                    ]
                )
        rate = s.catch_up_per_s
        rows.append(
            ["repo_svc catch-up", "~65,000 /s", "-" if rate is None else f"{rate:,.0f} /s", ">= 150,000 /s"]
        )
        if s.restart_checkpoint_s is not None:
            rows.append(
                [
                    f"repo_svc restart from a checkpoint over {s.records_full:,} records",
                    "-",
                    f"{s.restart_checkpoint_s:.1f} s ({s.records_full / s.restart_checkpoint_s:,.0f} /s)",
                    "<= 10 s at 1M",
                ]
            )
        for z in s.sizes:
            goal = "<= 30 ms" if z.targets <= 20_000 else "<= 200 ms" if z.targets <= 200_000 else "-"
            now = "~480 ms at 100k" if z.targets >= 50_000 else "-"
            rows.append(
                [f"new subscriber, AllTargets over {z.targets}", now, f"{_ms(z.snapshot.p50)} ms", goal]
            )
            rows.append(
                [f"  joining a live AllTargets over {z.targets}", "-", f"{_ms(z.joining.p50)} ms", goal]
            )
            rows.append(
                [
                    f"  raw gRPC floor, one {z.snapshot_bytes / 1e6:.1f} MB message",
                    "-",
                    f"{_ms(z.transfer_floor.p50)} ms",
                    "-",
                ]
            )
        rows.append(
            [f"empty filtered Get over {big.targets}", "~25 ms", f"{_ms(big.empty_get.p50)} ms", "<= 1 ms"]
        )
        rows.append(["  raw gRPC floor, one unary call", "-", f"{_ms(big.get_floor.p50)} ms", "-"])
        if big.get_handling_s is not None:
            rows.append(
                ["  query_svc's own handling of it (mean)", "-", f"{_ms(big.get_handling_s)} ms", "-"]
            )
    if r.ui_scale is not None:
        rows += ui_scale_rows(r.ui_scale)
    return rows


_ISSUE11_HEAD = ["Issue 11 measure", "Now (issue)", "This run", "Target"]


def verdict(r: BenchResults) -> str:
    floor = r.floor_txn.produce_to_consume.p50
    e2e = r.e2e.send_to_emission.p50
    ack = r.e2e.ack_to_emission.p50
    met = e2e <= TARGET_RATIO * floor
    return (
        f"Target: end-to-end (send -> emission) p50 within {TARGET_RATIO:.0f}x the transactional "
        f"floor p50: {_ms(e2e)} ms vs {TARGET_RATIO:.0f} x {_ms(floor)} = {_ms(TARGET_RATIO * floor)} ms "
        f"-> {'MET' if met else 'NOT MET'} ({_ratio(e2e, floor)}). "
        f"Ack -> emission p50 is {_ms(ack)} ms ({_ratio(ack, floor)} the floor)."
    )


def _notes(r: BenchResults) -> list[str]:
    notes = [
        "FLOOR = the transactional produce->consume p50/p99 (how Myko uses Kafka); "
        "'p50 / plain' compares with a plain acks=all produce -> read_uncommitted consume.",
    ]
    probed = r.e2e.send_to_emission_probed
    if len(probed):
        notes.append(
            f"The breakdown's probe (a Kafka reader of its own) was off for the figures above: with it "
            f"reading (the breakdown's commands, in the same rounds) send -> emission p50 was "
            f"{_ms(probed.p50)} ms, {(probed.p50 - r.e2e.send_to_emission.p50) * 1000:+.2f} ms beside them."
        )
    if len(r.round_ratios) > 1:
        notes.append(
            f"The floors and the end-to-end commands ran in {len(r.round_ratios)} alternating rounds; "
            "send -> emission p50 / floor p50 within each round: "
            + ", ".join(f"{x:.1f}x" for x in r.round_ratios)
            + "."
        )
    if r.e2e.emissions_before_ack:
        notes.append(
            f"{r.e2e.emissions_before_ack} of {len(r.e2e.command)} emissions reached the watcher "
            "before the command's ack (negative ack -> emission)."
        )
    # query_svc's CPU per change by subscriber count: the evaluation is shared, so
    # growth is the per-stream cost of sending the shared payload.
    per_change = [
        (f.subscribers, 1e6 * f.cpu.seconds.get("query", 0.0) / f.commands)
        for f in r.fanout
        if f.cpu is not None and f.commands
    ]
    if len(per_change) >= 2 and per_change[-1][0] > per_change[0][0]:
        (n0, us0), (n1, us1) = per_change[0], per_change[-1]
        notes.append(
            f"Fan-out: query_svc CPU per change {us0:.0f} us with {n0} subscriber(s), {us1:.0f} us "
            f"with {n1}: {(us1 - us0) / (n1 - n0):.0f} us per extra subscriber."
        )
    hot_lost = [t for t in r.throughput if t.hot and t.lost_updates]
    if hot_lost:
        notes.append(f"LOST UPDATES on the hot target: {[t.lost_updates for t in hot_lost]}")
    return notes


_OVERHEAD_HEAD = [
    "Measure",
    "n per side",
    "OFF p50 ms",
    "ON p50 ms",
    "p50 change",
    "OFF p99 ms",
    "ON p99 ms",
    "p99 change",
]


def _pct(off: float, on: float) -> str:
    delta = OverheadResult.delta_pct(off, on)
    return "-" if math.isnan(delta) else f"{delta:+.1f}%"


def _overhead_rows(o: OverheadResult) -> list[list[str]]:
    def row(label: str, off: Samples, on: Samples) -> list[str]:
        return [
            label,
            str(len(on)),
            _ms(off.p50),
            _ms(on.p50),
            _pct(off.p50, on.p50),
            _ms(off.p99),
            _ms(on.p99),
            _pct(off.p99, on.p99),
        ]

    return [
        row("command send -> ack", o.off.send_to_ack, o.on.send_to_ack),
        row("command send -> query emission", o.off.send_to_emission, o.on.send_to_emission),
    ]


def overhead_verdict(o: OverheadResult) -> str:
    off, on = o.off.send_to_emission.p50, o.on.send_to_emission.p50
    return (
        f"Target: with metrics and tracing ON, send -> emission p50 within {TARGET_PCT:.0f}% of OFF: "
        f"{_ms(on)} ms vs {_ms(off)} ms ({_pct(off, on)}) -> {'MET' if o.met else 'NOT MET'}."
    )


def _overhead_notes(o: OverheadResult) -> list[str]:
    spans = "unknown" if o.spans_exported is None else str(o.spans_exported)
    return [
        f"{o.rounds} interleaved rounds of {o.per_round} commands per side; load average "
        f"{o.load_before} before, {o.load_after} after.",
        "ON: OTLP/gRPC export to a receiver process (bench/otlp_sink.py), sampler parentbased_traceidratio 0.1 (the default); "
        f"spans received: {spans}; metrics served and scraped every {SCRAPE_INTERVAL_S:.0f} s; status reports. "
        "OFF: OTEL_SDK_DISABLED=true, no metrics port, no status reports.",
    ]


def _text_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(head[i]), *(len(row[i]) for row in rows)) for i in range(len(head))]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return [fmt(head), "  ".join("-" * w for w in widths), *(fmt(row) for row in rows)]


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    align = ["---", *("---:" for _ in head[1:])]
    return [
        "| " + " | ".join(head) + " |",
        "| " + " | ".join(align) + " |",
        *("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows),
    ]


def render_text(r: BenchResults) -> str:
    out = [f"Myko benchmark ({r.command}), {r.duration_s:.0f} s", ""]
    out += [f"  {k}: {v}" for k, v in r.machine.lines()]
    out += ["", "Latency (sequential, one command at a time)", *_text_table(_LATENCY_HEAD, _latency_rows(r))]
    out += ["", "Throughput (concurrent clients)", *_text_table(_THROUGHPUT_HEAD, _throughput_rows(r))]
    if r.unary_floor:
        out += [
            "",
            "Raw gRPC unary floor beside the throughput (bare grpc.aio, same clients)",
            *_text_table(_UNARY_FLOOR_HEAD, _unary_floor_rows(r)),
            *_unary_floor_notes(r),
        ]
    if r.batch:
        out += ["", "ExecuteBatch throughput", *_text_table(BATCH_HEAD, batch_rows(r.batch))]
    if r.batch_floor is not None:
        out += [
            "",
            "Raw Kafka floor beside ExecuteBatch (bare aiokafka, same batches)",
            *_text_table(_BATCH_FLOOR_HEAD, _batch_floor_rows(r)),
            *_batch_floor_notes(r),
        ]
    out += ["", "Fan-out (identical Watch subscribers)", *_text_table(_FANOUT_HEAD, _fanout_rows(r))]
    if r.fanout_mux is not None:
        out += [
            "",
            fanout_mux.title(r.fanout_mux),
            *_text_table(fanout_mux.HEAD, fanout_mux.rows(r.fanout_mux)),
        ]
    out += ["", "CPU by process (% of one core; ms per command)", *_text_table(_CPU_HEAD, _cpu_rows(r))]
    if r.scale is not None:
        out += ["", "Scale (stored Targets)", *_text_table(_SCALE_HEAD, _scale_rows(r)), *_scale_notes(r)]
    out += ["", "Issue 11 targets", *_text_table(_ISSUE11_HEAD, _issue11_rows(r))]
    if r.ui_scale is not None:
        out += ui_scale_notes(r.ui_scale)
    out += ["", verdict(r), *_notes(r)]
    if r.overhead is not None:
        out += ["", "Observability overhead (ON vs OFF, interleaved)"]
        out += _text_table(_OVERHEAD_HEAD, _overhead_rows(r.overhead))
        out += ["", overhead_verdict(r.overhead), *_overhead_notes(r.overhead)]
    return "\n".join(out)


def render_markdown(r: BenchResults) -> str:
    out = [
        BEGIN,
        f"## Last run: {r.machine.date_utc} UTC",
        "",
        f"Command: `{r.command}` (took {r.duration_s:.0f} s).",
        "",
        "| Machine | |",
        "| --- | --- |",
        *(f"| {k} | {v} |" for k, v in r.machine.lines()),
        "",
        "### Latency (sequential, one command at a time)",
        "",
        *_md_table(_LATENCY_HEAD, _latency_rows(r)),
        "",
        f"**{verdict(r)}**",
        "",
        *(f"- {n}" for n in _notes(r)),
        "",
        "### Throughput (concurrent clients, one Execute in flight each)",
        "",
        *_md_table(_THROUGHPUT_HEAD, _throughput_rows(r)),
        *(
            [
                "",
                "### Raw gRPC unary floor beside the throughput (bare grpc.aio, same clients)",
                "",
                *_md_table(_UNARY_FLOOR_HEAD, _unary_floor_rows(r)),
                "",
                *(f"- {n}" for n in _unary_floor_notes(r)),
            ]
            if r.unary_floor
            else []
        ),
        *(
            [
                "",
                "### ExecuteBatch throughput (bench/batch_throughput.py)",
                "",
                *_md_table(BATCH_HEAD, batch_rows(r.batch)),
            ]
            if r.batch
            else []
        ),
        *(
            [
                "",
                "### Raw Kafka floor beside ExecuteBatch (bare aiokafka, same batches)",
                "",
                *_md_table(_BATCH_FLOOR_HEAD, _batch_floor_rows(r)),
                "",
                *(f"- {n}" for n in _batch_floor_notes(r)),
            ]
            if r.batch_floor is not None
            else []
        ),
        "",
        "### Fan-out (identical Watch subscribers, one connection each)",
        "",
        *_md_table(_FANOUT_HEAD, _fanout_rows(r)),
        "",
        *(
            [
                "### " + fanout_mux.title(r.fanout_mux),
                "",
                *_md_table(fanout_mux.HEAD, fanout_mux.rows(r.fanout_mux)),
                "",
            ]
            if r.fanout_mux is not None
            else []
        ),
        "### CPU by process (% of one core over the phase; CPU ms per measured command)",
        "",
        *_md_table(_CPU_HEAD, _cpu_rows(r)),
    ]
    if r.scale is not None:
        out += [
            "",
            "### Scale (many stored Targets; last phase of the run)",
            "",
            *_md_table(_SCALE_HEAD, _scale_rows(r)),
            "",
            *(f"- {n}" for n in _scale_notes(r)),
        ]
    out += [
        "",
        "### Issue 11 targets (this run beside the issue's figures)",
        "",
        *_md_table(_ISSUE11_HEAD, _issue11_rows(r)),
    ]
    if r.ui_scale is not None:
        out += ["", *(f"- {n}" for n in ui_scale_notes(r.ui_scale))]
    if r.overhead is not None:
        out += [
            "",
            "### Observability overhead (metrics and tracing ON vs OFF, interleaved)",
            "",
            *_md_table(_OVERHEAD_HEAD, _overhead_rows(r.overhead)),
            "",
            f"**{overhead_verdict(r.overhead)}**",
            "",
            *(f"- {n}" for n in _overhead_notes(r.overhead)),
        ]
    out.append(END)
    return "\n".join(out) + "\n"


def write_markdown(path: Path, r: BenchResults) -> None:
    """Replace the recorded block in `path`, keeping everything around it."""
    block = render_markdown(r)
    if path.exists():
        text = path.read_text()
        start, end = text.find(BEGIN), text.find(END)
        if start >= 0 and end > start:
            rest = text[end + len(END) :].lstrip("\n")
            path.write_text(text[:start] + block + ("\n" + rest if rest else ""))
            return
        path.write_text(text.rstrip("\n") + "\n\n" + block)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_DOC_HEAD + block)
