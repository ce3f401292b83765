"""Catch-up and start-up over many stored Targets, beside raw Kafka reads of the same topics (issue 11, target 4).

    python -m bench.catch_up --targets 100000,1000000 [--partitions 3] [--profile DIR]
    MYKO_APP=targets python -m bench.catch_up --targets 1000000 --no-reads --no-services  # every service

On a fresh topic prefix, starts repo_svc once (it creates the topics as the
code under test does), then fills the Target topic with distinct Targets written
the way command_svc writes them (an ImportTargets' shape: 1,000 SETs per Kafka
transaction, so transaction markers are in the topic too) up to each size, and
at each size takes, in this order:

- raw floors over the same entity topics: `kcat` (librdkafka, C) and a bare
  aiokafka consumer (read_committed, no group, the reader's fetch settings,
  records counted and dropped): how fast the records can be read at all here;
- the reader in process: `TopicReader` feeding a repo_svc `Store` (decoding,
  quarantine checks, reduction), from start to caught up;
- repo_svc, command_svc and query_svc each started as a process until SERVING
  (query_svc after repo_svc: it mirrors it), with their RSS; `--profile DIR`
  samples repo_svc's start with py-spy;
- with checkpoints (unless `--no-checkpoint`; docs/checkpoints.md): repo_svc
  started with MYKO_CHECKPOINT_DIR, replaying and then writing a checkpoint,
  stopped, started again from the checkpoint until SERVING; with it running,
  each other service started alone until SERVING and stopped: query_svc and
  report_svc (they load repo_svc's snapshot) and the gateway (GET /healthz);
  saga_svc as a deployment restarts it, from a checkpoint of its own store like
  repo_svc (its sagas' consumer groups committed at the ends of their source
  topics first; `--no-others` skips these three); then command_svc from a
  checkpoint like repo_svc; then one line: the slowest service and
  whether every one was SERVING within 10 s (the target). saga_svc's first
  start, on the empty topics, is timed at the beginning (it creates its
  dead-letter topic and its groups).

Kafka is started from the project's jars unless KAFKA_BOOTSTRAP_SERVERS is set.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import resource
import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from google.protobuf import timestamp_pb2

from bench.profiles import PySpy, summarise
from bench.services import kafka_bootstrap, myko_stack
from myko import catalogue
from myko.app import load_app
from myko.events import set_event, to_record
from myko.local.procs import ServiceProcess, Stack
from myko.quarantine import Quarantine
from myko.reader import TopicReader
from myko.repo import Store
from myko.settings import KafkaSettings
from myko.v1 import item_pb2

PER_TX = 1000
# Started beside the three in the checkpoint part: the rest of a deployment.
OTHERS = ("report", "saga", "gateway")
# The target's bound on every service's start at 1M (issue 11, target 4).
SERVING_WITHIN_S = 10.0
# The reader's fetch settings (read from it, so an older checkout measures its own).
PARTITION_FETCH_BYTES: int = getattr(TopicReader, "PARTITION_FETCH_BYTES", 4 * 1024 * 1024)
FETCH_MAX_BYTES: int = getattr(TopicReader, "FETCH_MAX_BYTES", 50 * 1024 * 1024)
MAX_BATCH_RECORDS: int = getattr(TopicReader, "MAX_BATCH_RECORDS", 5000)
TARGET = "targets.v1.Target"
ZONE = "targets.v1.Zone"


@dataclass
class Read:
    what: str
    records: int  # records handed over (markers excluded)
    seconds: float
    # CPU seconds the reading process used: on a shared machine wall time measures the load as
    # much as the code; records per CPU second is the steadier figure.
    cpu_s: float

    @property
    def per_s(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    @property
    def per_cpu_s(self) -> float:
        return self.records / self.cpu_s if self.cpu_s > 0 else 0.0


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def fill(bootstrap: str, topic: str, start: int, stop: int, partitions: int) -> None:
    """Targets scale-<start>..scale-<stop-1>, as command_svc writes an ImportTargets.

    Each transaction's records go out as one batch per partition (round robin), so
    a million fill in minutes here instead of a send per record.
    """
    from targets.v1 import entities_pb2

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=f"catch-up-fill-{uuid.uuid4().hex[:8]}",
        enable_idempotence=True,
        acks="all",
        max_request_size=16 * 1024 * 1024,
        max_batch_size=16 * 1024 * 1024,
    )
    await producer.start()
    ts = timestamp_pb2.Timestamp()
    ts.GetCurrentTime()
    now_ms = ts.ToMilliseconds()
    started = time.monotonic()
    try:
        for first in range(start, stop, PER_TX):
            tx = str(uuid.uuid4())
            batches = [producer.create_batch() for _ in range(partitions)]
            for i in range(first, min(first + PER_TX, stop)):
                t = entities_pb2.Target(
                    item=item_pb2.MItem(id=f"scale-{i:07d}", type=TARGET, version=1, created_tx=tx),
                    name=f"Scale target {i}",
                    status=entities_pb2.TARGET_STATUS_ACTIVE,
                    score=float(i % 1000),
                    tags=["bench", f"t{i % 16}"],
                )
                ev = set_event(t, tx=tx, ts=ts, source="bench-catch-up")
                ev.principal = "anonymous"
                rec = to_record(ev, topic)
                batch = batches[i % partitions]
                if batch.append(timestamp=now_ms, key=rec.key, value=rec.value, headers=rec.headers) is None:
                    raise RuntimeError("a fill batch is full: lower PER_TX")
            async with producer.transaction():
                sent = []
                for partition, batch in enumerate(batches):
                    batch.close()
                    sent.append(await producer.send_batch(batch, topic, partition=partition))
                await asyncio.gather(*sent)
            done = min(first + PER_TX, stop) - start
            if done % 100_000 == 0:
                print(f"  filled {done} ({done / (time.monotonic() - started):.0f}/s)", flush=True)
    finally:
        await producer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topics: Sequence[str]) -> list[TopicPartition]:
    for _ in range(100):
        found = {t: consumer.partitions_for_topic(t) for t in topics}
        if all(found.values()):
            return [TopicPartition(t, p) for t, ps in found.items() for p in sorted(ps or ())]
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
    raise RuntimeError(f"no partitions known for {list(topics)}")


async def offsets_in(bootstrap: str, topics: Sequence[str]) -> int:
    """Offsets the topics span now (records and transaction markers)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await _partitions(consumer, topics)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        return sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        await consumer.stop()


async def commit_saga_groups(bootstrap: str, prefix: str) -> int:
    """Each saga's consumer group committed at the end of its source topics, as a deployment
    that has handled every event leaves it at a restart; returns the offsets committed (summed)."""
    app = load_app("targets")
    committed = 0
    for saga in app.sagas:
        topics = [app.entities.of(source).topic(prefix) for source in saga.sources]
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            # SagaRunner's group id: `<prefix><base>.<saga>` (myko/catalogue.py).
            group_id=f"{prefix}{catalogue.SAGA_GROUP_ID}.{saga.name}",
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await consumer.start()
        try:
            tps = await _partitions(consumer, topics)
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            # Not a member of the group (it is empty while saga_svc is stopped): a plain commit.
            await consumer.commit(ends)
            committed += sum(ends.values())
        finally:
            await consumer.stop()
    return committed


async def read_bare(
    bootstrap: str, topics: Sequence[str], partition_fetch_bytes: int = PARTITION_FETCH_BYTES
) -> Read:
    """A bare aiokafka consumer with TopicReader's settings, reading to the end and dropping records."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="none",
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=partition_fetch_bytes,
        fetch_max_bytes=FETCH_MAX_BYTES,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    await consumer.start()
    try:
        tps = await _partitions(consumer, topics)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        count = 0
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            fetched = await consumer.getmany(timeout_ms=500, max_records=MAX_BATCH_RECORDS)
            count += sum(len(recs) for recs in fetched.values())
        took, cpu = time.perf_counter() - t0, time.process_time() - c0
        return Read(
            f"aiokafka consumer, {partition_fetch_bytes >> 20} MiB per partition fetch", count, took, cpu
        )
    finally:
        await consumer.stop()


def read_kcat(bootstrap: str, topics: Sequence[str]) -> Read | None:
    """kcat (librdkafka) reading the topics to the end, read_committed, one line per record."""
    exe = shutil.which("kcat") or shutil.which("kafkacat")
    if exe is None:
        return None
    count = 0
    t0, c0 = time.perf_counter(), _children_cpu_s()
    for topic in topics:
        argv = [exe, "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q"]
        argv += ["-X", "isolation.level=read_committed", "-f", "%o\\n"]
        out = subprocess.run(argv, check=True, capture_output=True).stdout
        count += out.count(b"\n")
    return Read("kcat (librdkafka, C)", count, time.perf_counter() - t0, _children_cpu_s() - c0)


async def read_store(
    bootstrap: str, topics: Sequence[str], prefix: str, batch_records: int = MAX_BATCH_RECORDS
) -> Read:
    """repo_svc's path in process: TopicReader -> Store (decode, checks, reduction) until caught up."""
    app = load_app("targets")
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix)
    store = Store(app.entities, topic_prefix=prefix, quarantine=Quarantine("bench"))
    t0, c0 = time.perf_counter(), time.process_time()
    reader = TopicReader(
        kafka, store.topics, store.apply_records, client_id="bench-catch-up", max_batch_records=batch_records
    )
    await reader.start()
    try:
        await reader.wait_caught_up(timeout_s=600)
        took, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        await reader.stop()
    stored = sum(len(store.repo(name)) for name in (TARGET, ZONE))
    return Read(f"TopicReader -> Store in process, {batch_records} records per batch", stored, took, cpu)


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def time_to_serving(svc: ServiceProcess, profile: Path | None = None) -> tuple[float, float, float]:
    """Start `svc`; seconds until SERVING (Python start-up included), its CPU seconds and RSS (MiB) then."""
    t0 = time.perf_counter()
    svc.start()
    assert svc.pid is not None
    with PySpy(svc.pid, profile) if profile is not None else contextlib.nullcontext():
        svc.wait_healthy(timeout_s=900)
    took = time.perf_counter() - t0
    return took, _cpu_s(svc.pid), _rss_mb(svc.pid)


def _checkpoint_line(log_path: Path, what: str, since: int) -> str:
    """The last line of repo_svc's log after byte `since` that starts with `what` (myko/checkpoints.py)."""
    text = log_path.read_text(errors="replace")[since:] if log_path.exists() else ""
    found = [line for line in text.splitlines() if what in line]
    return found[-1].split("myko.checkpoints: ", 1)[-1] if found else f"(no '{what}' line in {log_path})"


def _from_checkpoint(svc: ServiceProcess, directory: Path, offsets: int) -> float:
    """`svc` (repo, command or saga) replays and writes a checkpoint, stops, and starts again
    from it; left running. Returns the seconds of that last start."""
    # A checkpoint as soon as the replay is done; INFO, for the checkpoint's own log lines.
    svc.env.update(
        {
            "MYKO_CHECKPOINT_DIR": str(directory),
            "MYKO_CHECKPOINT_EVERY_RECORDS": "1",
            "MYKO_LOG_LEVEL": "INFO",
        }
    )
    own = directory / re.sub(r"[^A-Za-z0-9._-]", "_", svc.env["MYKO_INSTANCE_ID"])
    name = f"{svc.name}_svc"
    took, cpu, _ = time_to_serving(svc)
    print(f"  {name} with MYKO_CHECKPOINT_DIR, none there yet: SERVING after {took:.2f} s, {cpu:.2f} CPU s")
    deadline = time.monotonic() + 600
    while not list(own.glob("*.ckpt")):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no checkpoint in {own} within 600 s")
        time.sleep(0.5)
    size_mb = sum(p.stat().st_size for p in own.glob("*.ckpt")) / 1e6
    print(f"    {_checkpoint_line(svc.log_path, 'wrote checkpoint', 0)} ({size_mb:.0f} MB)", flush=True)
    svc.stop()
    # Restarted with the default checkpoint cadence: one per record would keep a thread
    # writing 1M-entity checkpoints beside what is timed next (query_svc's snapshot).
    svc.env.pop("MYKO_CHECKPOINT_EVERY_RECORDS")
    since = svc.log_path.stat().st_size
    took, cpu, rss = time_to_serving(svc)
    print(f"  load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(
        f"  {name} from the checkpoint: SERVING after {took:.2f} s, {cpu:.2f} CPU s, RSS {rss:.0f} MiB"
        f" ({offsets / took:,.0f} offsets/s of the topics, effective)",
        flush=True,
    )
    print(f"    {_checkpoint_line(svc.log_path, 'loaded checkpoint', since)}", flush=True)
    return took


def _timed_alone(svc: ServiceProcess, what: str) -> float:
    """`svc` started until SERVING, its line printed, stopped; returns the seconds."""
    took, cpu, rss = time_to_serving(svc)
    print(
        f"  {_runner(svc)}{what}: SERVING after {took:.2f} s, {cpu:.2f} CPU s, RSS {rss:.0f} MiB",
        flush=True,
    )
    svc.stop()
    return took


def _runner(svc: ServiceProcess) -> str:
    """Its name in the output: query_svc, gateway."""
    return catalogue.service(svc.name).runner


# What each one's line says it started after or with (the mirrors need repo_svc SERVING).
_STARTED = {
    "query": " after it",
    "report": " after it",
    "gateway": " (GET /healthz)",
}


def with_checkpoint(stack: Stack, directory: Path, offsets: int, *, bootstrap: str, prefix: str) -> None:
    """repo_svc, command_svc and saga_svc (when the stack has it) each start from a checkpoint
    of their own; with repo_svc running, each other service of `stack` in turn, alone
    (query_svc, and report_svc and the gateway when the stack has them); then one line on
    the slowest."""
    repo, command = stack.by_name("repo"), stack.by_name("command")
    saga = next((svc for svc in stack.services if svc.name == "saga"), None)
    own = [svc for svc in (repo, command, saga) if svc is not None]
    shutil.rmtree(directory, ignore_errors=True)
    saved = {svc.name: dict(svc.env) for svc in own}
    served: dict[str, float] = {}
    try:
        served["repo_svc"] = _from_checkpoint(repo, directory, offsets)
        for svc in stack.services:
            if svc not in own:
                served[_runner(svc)] = _timed_alone(svc, _STARTED.get(svc.name, ""))
        if saga is not None:
            committed = asyncio.run(commit_saga_groups(bootstrap, prefix))
            print(f"  the sagas' groups committed at their source topics' ends ({committed} offsets)")
            served["saga_svc"] = _from_checkpoint(saga, directory, offsets)
            saga.stop()
        served["command_svc"] = _from_checkpoint(command, directory, offsets)
        slowest = max(served, key=served.__getitem__)
        over = [f"{name} {took:.2f} s" for name, took in served.items() if took > SERVING_WITHIN_S]
        print(
            f"  slowest: {slowest} after {served[slowest]:.2f} s; every one of the {len(served)} services"
            f" SERVING within {SERVING_WITHIN_S:.0f} s: {'no (' + ', '.join(over) + ')' if over else 'yes'}",
            flush=True,
        )
    finally:
        for svc in reversed(stack.services):
            svc.stop()
        for svc in own:
            svc.env.clear()
            svc.env.update(saved[svc.name])
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--targets", default="100000", help="comma-separated sizes (stored Targets)")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument(
        "--fetch-mib",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[1, PARTITION_FETCH_BYTES >> 20],
        help="per-partition fetch sizes (MiB) of the bare aiokafka reads",
    )
    parser.add_argument(
        "--batch-records",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[MAX_BATCH_RECORDS],
        help="records per batch of the in-process reads",
    )
    parser.add_argument(
        "--no-services", action="store_true", help="skip the service start-up timings without checkpoints"
    )
    parser.add_argument(
        "--no-checkpoint",
        action="store_true",
        help="skip repo_svc's start from a checkpoint (and the other services' after it)",
    )
    parser.add_argument(
        "--no-others",
        action="store_true",
        help="in the checkpoint part, skip report_svc, saga_svc and the gateway",
    )
    parser.add_argument(
        "--no-reads", action="store_true", help="skip the kcat, aiokafka and in-process reads"
    )
    parser.add_argument(
        "--profile", type=Path, help="py-spy profile of each repo_svc start into this directory"
    )
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.targets.split(","))
    log_dir = Path(".run/bench/catch_up")
    with kafka_bootstrap() as bootstrap:
        prefix = f"c{uuid.uuid4().hex[:8]}."
        topics = [prefix + TARGET, prefix + ZONE]
        others = () if args.no_checkpoint or args.no_others else OTHERS
        stack, _ports = myko_stack(
            bootstrap_servers=bootstrap,
            topic_prefix=prefix,
            log_dir=log_dir,
            partitions=args.partitions,
            metrics=False,
            extra_services=others,
        )
        repo, command, query = (stack.by_name(name) for name in ("repo", "command", "query"))
        took, cpu, rss = time_to_serving(repo)
        print(
            f"empty topics: repo_svc SERVING after {took:.2f} s, {cpu:.2f} CPU s (start-up alone), RSS {rss:.0f} MiB",
            flush=True,
        )
        print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
        repo.stop()
        if "saga" in others:
            # Its first start, as a deployment's was: creates its dead-letter topic and its groups.
            took, cpu, rss = time_to_serving(stack.by_name("saga"))
            print(
                f"empty topics: saga_svc SERVING after {took:.2f} s, {cpu:.2f} CPU s (first start), RSS {rss:.0f} MiB",
                flush=True,
            )
            stack.by_name("saga").stop()
        stored = 0
        try:
            for size in sizes:
                print(f"filling up to {size} Targets ...", flush=True)
                asyncio.run(fill(bootstrap, prefix + TARGET, stored, size, args.partitions))
                stored = size
                offsets = asyncio.run(offsets_in(bootstrap, topics))
                print(f"{size} Targets ({offsets} offsets in the entity topics, markers included):")
                print(f"  load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
                reads = [] if args.no_reads else [r for r in (read_kcat(bootstrap, topics),) if r is not None]
                for fetch_mib in [] if args.no_reads else args.fetch_mib:
                    reads.append(asyncio.run(read_bare(bootstrap, topics, fetch_mib << 20)))
                for batch in [] if args.no_reads else args.batch_records:
                    reads.append(asyncio.run(read_store(bootstrap, topics, prefix, batch)))
                for r in reads:
                    print(
                        f"  {r.what}: {r.records} in {r.seconds:.2f} s = {r.per_s:,.0f} records/s;"
                        f" {r.cpu_s:.2f} CPU s = {r.per_cpu_s:,.0f} records per CPU s",
                        flush=True,
                    )
                profile = args.profile / f"repo-start-{size}.txt" if args.profile else None
                for svc in () if args.no_services else (repo, command, query):
                    took, cpu, rss = time_to_serving(svc, profile if svc is repo else None)
                    print(
                        f"  {svc.name}_svc SERVING after {took:.2f} s, {cpu:.2f} CPU s, RSS {rss:.0f} MiB",
                        flush=True,
                    )
                if profile is not None and not args.no_services:
                    print("\n".join(summarise(profile)))
                for svc in (query, command, repo):
                    svc.stop()
                if not args.no_checkpoint:
                    with_checkpoint(
                        stack, log_dir / "checkpoints", offsets, bootstrap=bootstrap, prefix=prefix
                    )
        finally:
            for svc in reversed(stack.services):
                svc.stop()


if __name__ == "__main__":
    main()
