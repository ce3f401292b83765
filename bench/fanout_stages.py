"""Where a fan-out change's time goes, stage by stage (issue 11, target 6).

Runs levels of bench/fanout_mux.py (default: the 100-Watch baseline and the
grouped LiveBus level) on a fresh stack that traces every command (sampler
always_on, spans sent to bench/otlp_sink.py), then lines up each measured
change in ms from the import's send, on the machine's one wall clock:

- command_svc: Execute starts, the handler is done, the Kafka commit is done,
  Execute ends (myko.v1.CommandBus/Execute, myko.command.handle, myko.kafka.commit);
- repo_svc: the batch carrying the import is applied (myko.repo.apply, linked to
  the command);
- query_svc: the batch arrived (where its emission spans start), the first and
  the last evaluation's result was built and handed to its streams (their ends);
- the client: the ack, the first and the last subscriber's frame read.

Tracing costs the services CPU (a span per emission, 100 per change): read the
stages' shares and order, not the absolute figures (bench/fanout_mux.py has
those, untraced).

    python -m bench.fanout_stages --subscribers 10000 --changes 10
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan

from bench.cpu import load_average
from bench.fanout_mux import MuxLevel, run_on_stack
from bench.samples import Samples
from bench.services import myko_stack
from bench.span_tree import read_dump
from myko.local.kafka import LocalKafka
from myko.local.ports import free_port

STAGES = (
    "command_svc: Execute starts",
    "command_svc: handler done",
    "command_svc: Kafka commit done",
    "repo_svc: batch applied",
    "query_svc: batch arrived",
    "query_svc: first result built",
    "query_svc: last result built",
    "client: ack",
    "client: first subscriber read",
    "client: last subscriber read",
)
_EXECUTE = "myko.v1.CommandBus/Execute"


def _ms(ns: int | None, send_ns: int) -> float:
    return math.nan if ns is None else (ns - send_ns) / 1e6


def change_stages(level: MuxLevel, spans: Sequence[ReadableSpan], clock_offset_ns: int) -> list[list[float]]:
    """Per measured change of `level`, each of STAGES in ms after its send.

    `clock_offset_ns` turns the bench's perf_counter into the spans' wall clock.
    A change's trace is the first Execute that started after its send."""
    by_trace: dict[int, list[ReadableSpan]] = defaultdict(list)
    linked: dict[int, list[ReadableSpan]] = defaultdict(list)
    for s in spans:
        if s.context is None:
            continue
        by_trace[s.context.trace_id].append(s)
        for link in s.links:
            linked[link.context.trace_id].append(s)
    executes = sorted((s for s in spans if s.name == _EXECUTE), key=lambda s: s.start_time or 0)

    def end_of(found: Iterable[ReadableSpan], name: str) -> int | None:
        ends = [s.end_time for s in found if s.name == name and s.end_time is not None]
        return max(ends) if ends else None

    out = []
    used: set[int] = set()
    for t_send, t_ack, first, last in level.times:
        send_ns = int(t_send * 1e9) + clock_offset_ns
        execute = next(
            (
                s
                for s in executes
                if (s.start_time or 0) >= send_ns and s.context is not None and s.context.trace_id not in used
            ),
            None,
        )
        row = [math.nan] * len(STAGES)
        if execute is not None and execute.context is not None:
            trace_id = execute.context.trace_id
            used.add(trace_id)
            own, others = by_trace[trace_id], linked[trace_id]
            emissions = [s for s in others if s.name.endswith(".emit")]
            row[:7] = [
                _ms(execute.start_time, send_ns),
                _ms(end_of(own, "myko.command.handle"), send_ns),
                _ms(end_of(own, "myko.kafka.commit"), send_ns),
                _ms(end_of(others, "myko.repo.apply"), send_ns),
                _ms(min((s.start_time or 0 for s in emissions), default=None), send_ns),
                _ms(min((s.end_time or 0 for s in emissions), default=None), send_ns),
                _ms(max((s.end_time or 0 for s in emissions), default=None), send_ns),
            ]
        row[7:] = [(t - t_send) * 1000 for t in (t_ack, first, last)]
        out.append(row)
    return out


def _table(level: MuxLevel, stages: list[list[float]]) -> list[str]:
    lines = [
        f"{level.name}: {level.subscribers} subscribers over {level.streams} streams, {len(stages)} changes"
    ]
    lines.append(f"  {'stage':<34} {'p50 ms after send':>18} {'p90':>8}")
    for n, name in enumerate(STAGES):
        values = Samples([row[n] / 1000 for row in stages if not math.isnan(row[n])])
        lines.append(f"  {name:<34} {values.p50 * 1000:>18.1f} {values.percentile(90) * 1000:>8.1f}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fanout_stages", description=__doc__.split("\n\n")[0])
    ap.add_argument("--subscribers", type=int, default=10000)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--changes", type=int, default=10)
    ap.add_argument("--levels", default="baseline,grouped")
    a = ap.parse_args(argv)

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    clock_offset_ns = time.time_ns() - time.perf_counter_ns()
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "spans.bin"
        port = free_port()
        sink = subprocess.Popen(
            [sys.executable, "-m", "bench.otlp_sink", str(port), str(dump)], stdout=subprocess.PIPE, text=True
        )
        kafka = LocalKafka()
        try:
            assert sink.stdout is not None
            if sink.stdout.readline().strip() != "ready":
                raise RuntimeError("the OTLP receiver did not start")
            say("Starting a local Kafka ...")
            kafka.start()
            prefix = f"benchstages{uuid.uuid4().hex[:8]}."
            stack, ports = myko_stack(
                bootstrap_servers=kafka.bootstrap_servers,
                topic_prefix=prefix,
                log_dir=Path(tmp) / "logs",
                partitions=3,
                extra_env={
                    "OTEL_SDK_DISABLED": "false",
                    "OTEL_TRACES_EXPORTER": "otlp",
                    "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                    "OTEL_TRACES_SAMPLER": "always_on",
                    "MYKO_STATUS_INTERVAL_MS": "0",
                },
            )
            with stack:
                before = load_average()
                result = run_on_stack(
                    stack,
                    ports,
                    kafka,
                    subscribers=a.subscribers,
                    queries=a.queries,
                    changes=a.changes,
                    warmup=2,
                    levels=a.levels.split(","),
                    say=say,
                )
                after = load_average()
            # The services export what they still hold as they stop.
        finally:
            kafka.stop()
            sink.terminate()
            sink.communicate(timeout=30)
        spans = list(read_dump(dump)) if dump.exists() else []
    print(f"load average {before} -> {after}; {len(spans)} spans")
    for level in result.levels:
        print("\n".join(_table(level, change_stages(level, spans, clock_offset_ns))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
