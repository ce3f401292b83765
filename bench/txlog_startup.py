"""command_svc start-up time and memory after N commands (issue 12, finding 4).

    python -m bench.txlog_startup --commands 100000,200000,400000

On a fresh topic prefix, starts `python -m command_svc` once on the empty
history (so the topics are created as the code under test creates them), then
fills the history up to each checkpoint with `RecordHits`-shaped commands,
written the way command_svc writes them (each command's Target event and its
tx-log record with the whole CommandResult, 500 commands per transaction, round
robin over 10 Targets), and after each checkpoint starts command_svc again and
reports how long it took to report SERVING, its RSS once serving and its peak
RSS. Kafka is started from the project's jars unless KAFKA_BOOTSTRAP_SERVERS is
set. Extra settings for command_svc can be passed as NAME=VALUE arguments.

With --compacted the entity topics are created first, compacting within seconds
(what hourly segments and the log cleaner do in production), and each
checkpoint waits for the cleaner: start-up then replays the live entities, not
every event ever written, and what is left to grow is command_svc's own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from google.protobuf import timestamp_pb2

from bench.services import kafka_bootstrap
from myko.events import set_event, to_record
from myko.local.ports import free_port
from myko.local.procs import ServiceProcess
from myko.v1 import command_pb2, item_pb2
from myko.watermark import Watermark

BATCH = 500
TARGETS = 10
TARGET = "targets.v1.Target"


def _target_bytes(target_id: str, hits: int, tx: str) -> bytes:
    from targets.v1 import entities_pb2

    t = entities_pb2.Target(name=f"target {target_id[:8]}", hit_count=hits, score=1.0)
    t.item.id = target_id
    t.item.type = TARGET
    t.item.version = hits + 1
    t.item.created_tx = tx
    t.item.updated_tx = tx
    return t.SerializeToString()


async def fill(bootstrap: str, prefix: str, commands: int) -> None:
    """Add `commands` commands to the history (the topics exist: command_svc made them)."""
    from targets.v1 import entities_pb2

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=f"fill-{prefix}",
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_request_size=8 * 1024 * 1024,
    )
    await producer.start()
    ids = [str(uuid.UUID(int=i + 1)) for i in range(TARGETS)]
    hits = dict.fromkeys(ids, 0)
    ts = timestamp_pb2.Timestamp()
    ts.GetCurrentTime()
    started = time.monotonic()
    try:
        done = 0
        while done < commands:
            n = min(BATCH, commands - done)
            async with producer.transaction():
                pending = []
                for i in range(n):
                    tid = ids[(done + i) % TARGETS]
                    hits[tid] += 1
                    tx = str(uuid.uuid4())
                    target = entities_pb2.Target.FromString(_target_bytes(tid, hits[tid], tx))
                    ev = set_event(target, tx=tx, ts=ts, source="bench-fill")
                    rec = to_record(ev, prefix + TARGET)
                    fut = await producer.send(rec.topic, key=rec.key, value=rec.value, headers=rec.headers)
                    pending.append((tx, ev, fut))
                for tx, ev, fut in pending:
                    md = await fut
                    ev.offset.CopyFrom(
                        item_pb2.Offset(topic=md.topic, partition=md.partition, offset=md.offset)
                    )
                    result = command_pb2.CommandResult(
                        tx=tx,
                        command_type="targets.v1.RecordHits",
                        events=[ev],
                        visible_at=Watermark.after([ev.offset]).to_proto(),
                    )
                    await producer.send(
                        prefix + "myko.tx",
                        key=tx.encode(),
                        value=result.SerializeToString(),
                        headers=[("myko-digest", os.urandom(32))],
                    )
            done += n
            if done % 20_000 == 0:
                print(f"  filled {done} commands ({done / (time.monotonic() - started):.0f}/s)", flush=True)
    finally:
        await producer.stop()


async def create_compacting_entity_topics(bootstrap: str, prefix: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        cfg = {
            "cleanup.policy": "compact",
            "segment.ms": "1000",
            "min.cleanable.dirty.ratio": "0.01",
            "max.message.bytes": str(8 * 1024 * 1024),
        }
        await admin.create_topics(
            [NewTopic(prefix + t, partitions, 1, topic_configs=cfg) for t in (TARGET, "targets.v1.Zone")]
        )
    finally:
        await admin.close()


async def count_records(bootstrap: str, topic: str) -> int:
    """How many committed records `topic` holds now."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        while not parts:  # as tests/kafka_inspect.py: the metadata comes on demand
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        count = 0
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            count += sum(len(recs) for recs in (await consumer.getmany(timeout_ms=500)).values())
        return count
    finally:
        await consumer.stop()


async def wait_compacted(bootstrap: str, prefix: str, *, at_most: int, timeout_s: float = 300.0) -> int:
    """Wait until the Target topic holds at most `at_most` records; return how many it holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        # The cleaner takes closed segments only: the last second of the fill stays.
        await asyncio.sleep(2.0)
        held = await count_records(bootstrap, prefix + TARGET)
        if held <= at_most or time.monotonic() > deadline:
            return held
        await asyncio.sleep(10.0)


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def measure(bootstrap: str, prefix: str, partitions: int, extra: dict[str, str], log_dir: Path) -> None:
    """Start command_svc on the history under `prefix`; print start-up time and memory."""
    port = free_port()
    svc = ServiceProcess(
        name="command",
        module="command_svc",
        env={
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "MYKO_TOPIC_PREFIX": prefix,
            "MYKO_TOPIC_PARTITIONS": str(partitions),
            "MYKO_COMMAND_PORT": str(port),
            "MYKO_APP": "targets",
            "MYKO_INSTANCE_ID": f"bench-{prefix}command",
            "MYKO_LOG_LEVEL": "INFO",
            **extra,
        },
        grpc_port=port,
        log_path=log_dir / f"{prefix}command.log",
    )
    started = time.monotonic()
    svc.start()
    try:
        svc.wait_healthy(timeout_s=600)
        elapsed = time.monotonic() - started
        assert svc.pid is not None
        time.sleep(1.0)
        rss = _status_kb(svc.pid, "VmRSS") / 1024
        peak = _status_kb(svc.pid, "VmHWM") / 1024
        print(f"command_svc SERVING after {elapsed:.1f} s; RSS {rss:.0f} MiB, peak RSS {peak:.0f} MiB")
        known = [line for line in svc.log_tail().splitlines() if "serving:" in line]
        if known:
            print("  " + known[-1].strip())
    finally:
        svc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commands", default="200000", help="comma-separated checkpoints")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--compacted", action="store_true", help="compact the entity topics before measuring")
    parser.add_argument("settings", nargs="*", help="NAME=VALUE passed to command_svc")
    args = parser.parse_args()
    extra = dict(s.split("=", 1) for s in args.settings)
    checkpoints = sorted(int(c) for c in args.commands.split(","))
    log_dir = Path(".run/bench/txlog")
    with kafka_bootstrap() as bootstrap:
        prefix = f"b{uuid.uuid4().hex[:8]}."
        if args.compacted:
            asyncio.run(create_compacting_entity_topics(bootstrap, prefix, args.partitions))
        print(f"empty history under {prefix}:")
        measure(bootstrap, prefix, args.partitions, extra, log_dir)
        done = 0
        for checkpoint in checkpoints:
            print(f"filling up to {checkpoint} commands ...", flush=True)
            asyncio.run(fill(bootstrap, prefix, checkpoint - done))
            done = checkpoint
            if args.compacted:
                held = asyncio.run(wait_compacted(bootstrap, prefix, at_most=5 * BATCH))
                print(f"  the Target topic holds {held} records after compaction")
            print(f"after {checkpoint} commands:")
            measure(bootstrap, prefix, args.partitions, extra, log_dir)


if __name__ == "__main__":
    main()
