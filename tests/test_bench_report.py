"""The benchmark's bookkeeping (no broker): percentiles, the verdict, and docs/benchmarks.md upkeep."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.batch_floor import BatchFloorResult, BatchShape, RecordSample
from bench.batch_throughput import BatchResult
from bench.cpu import CpuUse
from bench.end_to_end import EndToEndResult
from bench.fanout import FanoutResult
from bench.fanout_mux import MuxFanoutResult, MuxLevel, _Coverage
from bench.kafka_floor import FloorResult
from bench.machine import describe_machine
from bench.overhead import OverheadResult, SideResult
from bench.report import BEGIN, END, BenchResults, render_markdown, render_text, write_markdown
from bench.samples import Samples
from bench.scale import ScaleResult, SizeResult
from bench.throughput import ExecuteSizes, ThroughputResult, UnaryFloorResult


def ms(*values: float) -> Samples:
    return Samples([v / 1000 for v in values])


def results(*, e2e_ms: float) -> BenchResults:
    e2e = EndToEndResult(
        command=ms(e2e_ms - 1), ack_to_emission=ms(1.0), send_to_emission=ms(e2e_ms), rejected=ms(0.5)
    )
    e2e.cpu = CpuUse({"command": 0.5, "other": 0.1}, wall_s=1.0)
    return BenchResults(
        machine=describe_machine(kafka="Apache Kafka test", load_at_start="0.00 0.00 0.00"),
        command="make bench",
        floor_txn=FloorResult(ms(4.0), ms(3.0)),
        floor_myko_shape=FloorResult(ms(4.0), ms(3.0)),
        floor_plain=FloorResult(ms(1.0), ms(0.8)),
        e2e=e2e,
        throughput=[ThroughputResult(clients=8, hot=True, commands=100, elapsed_s=2.0, lost_updates=0)],
        fanout=[FanoutResult(subscribers=100, commands=10)],
        duration_s=60.0,
    )


def test_percentiles_are_observed_values_by_nearest_rank() -> None:
    s = Samples([float(v) for v in range(100, 0, -1)])
    assert (s.p50, s.p99, s.percentile(100)) == (50.0, 99.0, 100.0)
    assert Samples([7.0]).p99 == 7.0


def test_verdict_compares_end_to_end_p50_with_four_times_the_transactional_floor() -> None:
    assert "-> MET (4.0x)" in render_text(results(e2e_ms=16.0))
    assert "-> NOT MET (4.2x)" in render_text(results(e2e_ms=17.0))


def test_the_probes_cost_is_reported_beside_the_end_to_end_it_was_kept_out_of() -> None:
    r = results(e2e_ms=16.0)
    assert "with it reading" not in render_text(r)  # no breakdown taken: nothing to compare
    r.e2e.send_to_emission_probed = ms(18.5)
    text = render_text(r)
    assert "send -> emission p50 was 18.50 ms, +2.50 ms beside them" in text
    assert "-> MET (4.0x)" in text  # the verdict is the commands without the probe


def test_a_new_run_replaces_only_the_recorded_block(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    write_markdown(doc, results(e2e_ms=10.0))
    assert doc.read_text().count(BEGIN) == 1
    doc.write_text(
        "# Title\n\nHow to read it.\n\n" + doc.read_text().split("\n\n", 2)[2] + "\n## Findings\n\nKept.\n"
    )

    write_markdown(doc, results(e2e_ms=12.0))
    text = doc.read_text()
    assert text.startswith("# Title\n\nHow to read it.\n\n" + BEGIN)
    assert text.endswith(END + "\n\n## Findings\n\nKept.\n")
    assert text.count(BEGIN) == 1 and "| 12.00 |" in text and "| 10.00 |" not in text


def test_overhead_verdict_compares_the_on_p50_with_five_percent_over_off() -> None:
    def overhead(on_ms: float) -> OverheadResult:
        return OverheadResult(
            off=SideResult(send_to_ack=ms(9.0), send_to_emission=ms(10.0)),
            on=SideResult(send_to_ack=ms(on_ms - 1), send_to_emission=ms(on_ms)),
            rounds=2,
            per_round=1,
            spans_exported=42,
            load_before="1.00 1.00 1.00",
            load_after="1.10 1.00 1.00",
        )

    met = results(e2e_ms=10.0)
    met.overhead = overhead(10.5)
    assert "10.50 ms vs 10.00 ms (+5.0%) -> MET" in render_text(met)
    missed = results(e2e_ms=10.0)
    missed.overhead = overhead(10.6)
    text = render_text(missed)
    assert "(+6.0%) -> NOT MET" in text and "spans received: 42" in text


def test_the_scale_section_reports_per_target_memory_catch_up_and_the_issue_targets() -> None:
    r = results(e2e_ms=8.0)
    size = SizeResult(
        targets=100_200,
        fill_s=10.0,
        imported=100_000,
        rss_bytes={"repo": 150_000_000, "command": 60_000_000, "query": 250_000_000},
        snapshot=ms(150.0, 210.0, 190.0),
        snapshot_bytes=10_400_000,
        joining=ms(20.0),
        transfer_floor=ms(60.0),
        empty_get=ms(0.8),
        get_floor=ms(0.5),
        probe_get=ms(0.7),
        get_handling_s=0.00012,
    )
    r.scale = ScaleResult(
        rss_before={"repo": 50_000_000, "command": 50_000_000, "query": 50_000_000},
        targets_before=200,
        sizes=[size],
        restart_empty_s=2.0,
        restart_full_s=3.0,
        records_full=100_500,
        records_empty=500,
    )
    text = render_text(r)
    # (150 MB - 50 MB) / 100,000 added Targets; 250 MB -> 2,000 B.
    md = render_markdown(r)
    assert (
        "| 100200 | 10000 | 190.00 | 210.00 | 20.00 | 10.4 | 60.00 | 0.80 | 0.50 | 0.12 | 0.70 | 1000 | 100 | 2000 |"
        in md
    )
    assert "catch-up ~100,000 records/s beyond start-up" in text
    assert "| send -> emission p50 / floor | 2.5x | 2.0x | <= 2.0x |" in render_markdown(r)
    assert (
        "| new subscriber, AllTargets over 100200 | ~480 ms at 100k | 190.00 ms | <= 200 ms |"
        in render_markdown(r)
    )
    assert "|   raw gRPC floor, one 10.4 MB message | - | 60.00 ms | - |" in md
    assert "| empty filtered Get over 100200 | ~25 ms | 0.80 ms | <= 1 ms |" in md
    assert "|   raw gRPC floor, one unary call | - | 0.50 ms | - |" in md
    assert "|   query_svc's own handling of it (mean) | - | 0.12 ms | - |" in md


def test_the_fan_out_at_scale_section_reports_cpu_per_extra_subscriber_against_the_baseline() -> None:
    r = results(e2e_ms=8.0)
    mux = MuxFanoutResult(subscribers=1000, queries=100, per_stream=256)
    for name, subscribers, streams, query_cpu_s in (
        ("baseline", 100, 100, 1.5),  # 50 ms a change over 30 changes
        ("separate", 1000, 1000, 4.5),  # 150 ms: (150 - 50) / 900 = 111.1 us per extra subscriber
        ("grouped", 1000, 4, 1.608),  # 53.6 ms: 4.0 us
    ):
        level = MuxLevel(name, subscribers, streams, changes=30, small_last=ms(12.0))
        # Sent at 0, acked at 30 ms; 2 frames, the second (the last) naming 3 of 4 subscribers.
        for last_ms in (40.0, 90.0):
            level.add_change(0.0, 0.030, [(0.035, 1), (last_ms / 1000, 3)])
        level.cpu = CpuUse({"query": query_cpu_s}, wall_s=10.0)
        mux.levels.append(level)
    r.fanout_mux = mux
    md, text = render_markdown(r), render_text(r)
    # send -> ack, ack -> last p50 / p99, ack -> each p99, send -> last p50 / p99, 1 Target, CPU
    assert (
        "| separate | 1000 | 1000 | 30 | 30.0 | 10.0 | 60.0 | 60.0 | 40.0 | 90.0 | 12.0 | 150.0 | 111.1 |"
        in md
    )
    assert "| grouped | 1000 | 4 | 30 | 30.0 | 10.0 | 60.0 | 60.0 | 40.0 | 90.0 | 12.0 | 53.6 | 4.0 |" in md
    assert "| baseline | 100 | 100 | 30 | 30.0 | 10.0 | 60.0 | 60.0 | 40.0 | 90.0 | 12.0 | 50.0 | - |" in md
    assert "1000 subscribers over 100 distinct queries" in text
    assert (
        "| fan-out 1000 over 100 queries (LiveBus, grouped): CPU per change per extra subscriber"
        " | ~28 us | 4.0 us | <= 10 us |" in md
    )
    assert (
        "|   last subscriber p99 after the ack (LiveBus, grouped; from the send: 90 ms) | - | 60 ms | <= 100 ms |"
        in md
    )


def test_each_subscriber_counts_once_in_the_pooled_arrivals() -> None:
    level = MuxLevel("grouped", 4, 1, changes=1)
    level.add_change(1.0, 1.010, [(1.005, 1), (1.020, 3)])
    # One subscriber before the ack (the frame beat the ack to the client), three 10 ms after.
    assert sorted(round(v * 1000, 3) for v in level.ack_each.values) == [-5.0, 10.0, 10.0, 10.0]
    assert level.last.values == [pytest.approx(0.020)]
    assert level.ack_last.values == [pytest.approx(0.010)]
    assert level.send_ack.values == [pytest.approx(0.010)]


async def test_fan_out_coverage_waits_for_every_group_of_the_change() -> None:
    cov = _Coverage(5)
    pair, trio = cov.group([0, 1]), cov.group([2, 3, 4])
    assert not cov.settled()  # no result yet
    cov.got(pair, 1.0, 0.1)
    cov.got(trio, 1.0, 0.1)
    assert cov.settled()
    cov.expect(2.0)
    cov.got(trio, 2.0, 0.5)
    cov.got(trio, 2.0, 0.6)  # the same result again: not a second arrival
    assert not cov.all_in.is_set()
    cov.got(pair, 2.0, 0.7)
    assert cov.all_in.is_set()
    assert cov.arrivals == [(0.5, 3), (0.7, 2)]
    cov.expect(3.0, cov.groups_of([1]))  # a change of the pair's query only
    cov.got(pair, 3.0, 0.9)
    assert cov.all_in.is_set()
    with pytest.raises(RuntimeError, match="two different groups"):
        cov.group([4])


def test_fan_out_stages_line_up_a_changes_spans_from_its_send() -> None:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import Link, SpanContext, TraceFlags

    from bench.fanout_stages import STAGES, change_stages

    def ctx(trace_id: int, span_id: int) -> SpanContext:
        return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))

    def span(
        name: str, start_ms: float, end_ms: float, trace_id: int, links: tuple[int, ...] = ()
    ) -> ReadableSpan:
        return ReadableSpan(
            name=name,
            context=ctx(trace_id, int(start_ms * 1000) + 1),
            links=[Link(ctx(t, 1)) for t in links],
            start_time=int(start_ms * 1e6),
            end_time=int(end_ms * 1e6),
        )

    spans = [
        span("myko.v1.CommandBus/Execute", 1, 60, trace_id=7),
        span("myko.command.handle", 2, 10, trace_id=7),
        span("myko.kafka.commit", 20, 50, trace_id=7),
        span("myko.repo.apply", 52, 55, trace_id=8, links=(7,)),
        span("myko.query.emit", 58, 61, trace_id=9, links=(7,)),
        span("myko.query.emit", 58, 70, trace_id=10, links=(7,)),
        span("myko.v1.CommandBus/Execute", 200, 210, trace_id=11),  # a later command's
    ]
    level = MuxLevel("grouped", 4, 1, changes=1)
    # Sent at 0 on both clocks, acked at 62 ms, read by the first subscriber at 72, the last at 90.
    level.times.append((0.0, 0.062, 0.072, 0.090))
    [row] = change_stages(level, spans, clock_offset_ns=0)
    assert dict(zip(STAGES, row, strict=True)) == pytest.approx(
        {
            "command_svc: Execute starts": 1.0,
            "command_svc: handler done": 10.0,
            "command_svc: Kafka commit done": 50.0,
            "repo_svc: batch applied": 55.0,
            "query_svc: batch arrived": 58.0,
            "query_svc: first result built": 61.0,
            "query_svc: last result built": 70.0,
            "client: ack": 62.0,
            "client: first subscriber read": 72.0,
            "client: last subscriber read": 90.0,
        }
    )


def test_the_raw_floors_stand_beside_the_throughput_rows_and_target_2() -> None:
    r = results(e2e_ms=8.0)
    r.throughput = [
        ThroughputResult(
            clients=64,
            hot=False,
            commands=3000,
            elapsed_s=5.0,
            cpu=CpuUse({"command": 3.0, "bench": 0.6}, 5.0),
        )
    ]
    sizes = ExecuteSizes(request=97, reply=464)
    r.unary_floor = [
        UnaryFloorResult(
            clients=64,
            sizes=sizes,
            calls=10_000,
            elapsed_s=5.0,
            latency=ms(30.0),
            cpu=CpuUse({"floor": 4.0, "bench": 2.8, "other": 1.5}, 5.0),
        )
    ]
    r.batch = [
        BatchResult(
            senders=4,
            batch_size=500,
            hot=False,
            commands=8000,
            elapsed_s=5.0,
            cpu=CpuUse({"kafka": 0.32}, 5.0),
        )
    ]
    shape = BatchShape(
        app="targets",
        entity_type="targets.v1.Target",
        event=RecordSample(b"bt-b0-00-00", b"v" * 89, (("myko-op", b"SET"),)),
        txlog=RecordSample(b"t" * 36, b"r" * 500, (("myko-digest", b"d" * 2),)),
    )
    r.batch_floor = BatchFloorResult(
        senders=4,
        batch_size=500,
        shape=shape,
        partitions=3,
        readers=2,
        commands=40_000,
        elapsed_s=5.0,
        latency=ms(250.0),
        cpu=CpuUse({"kafka": 0.8, "bench": 3.2, "other": 0.5}, 5.0),
        commands_per_transaction=511.6,
        commit=ms(45.0),
        send=ms(30.0),
        read_back=ms(11.0),
    )
    md, text = render_markdown(r), render_text(r)
    # 2,000 calls/s; server 0.4 and clients 0.28 ms per call, others 30 %; Myko 600/s, 0.30 of it, 1.0, 0.2 ms.
    assert (
        "| 64 | 10000 | 5.0 | 2000 | 30.00 | 30.00 | 0 | 0.400 | 0.280 | 30 | 600 | 0.30 | 1.000 | 0.200 |"
        in md
    )
    assert "answering 464 B to requests of 97 B" in text
    # 8,000/s; 512 per transaction; Kafka 0.02 and the bench 0.08 ms per command, others 10 %; Myko 1,600/s.
    assert (
        "| 4 x 500 | 2 | 40000 | 5.0 | 8000 | 512 | 250.00 | 250.00 | 0.020 | 0.080 | 10 | 1600 | 0.20 | 0.040 |"
        in md
    )
    assert "one event (110 B with key and headers)" in text and "one tx-log record (549 B)" in text
    assert "commit p50 45.00 ms (from the round" in text and "read back p50 11.00 ms" in text
    assert "handing the records to aiokafka's producer p50 30.00 ms" in text
    assert "| commands/s, 64 clients, single Execute | ~2,400 | 600 | >= 5,000 |" in md
    assert "|   raw gRPC unary floor, 64 clients (calls/s) | - | 2000 | - |" in md
    assert "| commands/s, ExecuteBatch (4 x 500) | - | 1600 | >= 20,000 |" in md
    assert "|   raw Kafka floor, the same batches (commands/s) | - | 8000 | - |" in md


def test_without_floors_the_throughput_tables_stand_alone() -> None:
    r = results(e2e_ms=8.0)
    r.throughput = [ThroughputResult(clients=64, hot=False, commands=3000, elapsed_s=5.0)]
    md = render_markdown(r)
    assert "| commands/s, 64 clients, single Execute | ~2,400 | 600 | >= 5,000 |" in md
    assert "raw gRPC unary floor" not in md and "Raw Kafka floor" not in md
