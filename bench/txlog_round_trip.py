"""`python -m bench.txlog_round_trip`: the tx-log record with the events, or after their offsets.

An interleaved A/B of command_svc's Kafka commit alone (TransactionalPublisher.commit
on one broker), the only part of the command path that changed: NOW sends each
command's tx-log record in the same produce request as its events (its logged
form, without offsets); BEFORE is the earlier shape, kept here only to compare,
which waited for the events' offsets and then sent the record (a second produce
round trip in every transaction). The two publishers alternate commit by commit,
so they share whatever else loads the machine.

    python -m bench.txlog_round_trip [--rounds 300] [--group 1,64]

Starts a local Kafka unless KAFKA_BOOTSTRAP_SERVERS is set.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from google.protobuf import any_pb2
from opentelemetry.trace import Span

from bench.cpu import load_average
from bench.samples import Samples
from myko.command_result import build_result
from myko.events import to_record
from myko.local.kafka import LocalKafka
from myko.ports import Committed, Proposal
from myko.publisher import TransactionalPublisher
from myko.settings import KafkaSettings
from myko.topics import TopicSpec, ensure_topics
from myko.txlog import command_digest, txlog_record
from myko.v1 import item_pb2

ENTITY = "bench.v1.Thing"


class RecordAfterOffsets(TransactionalPublisher):
    """The previous shape: the record holds the full result, so it waits for the offsets."""

    async def _send_all(
        self, producer: AIOKafkaProducer, proposals: Sequence[Proposal], spans: Sequence[Span | None]
    ) -> list[Committed]:
        pending = []
        for p in proposals:
            futs = []
            for ev in p.events:
                rec = to_record(ev, self._topic_of(ev.type))
                futs.append(await producer.send(rec.topic, key=rec.key, value=rec.value, headers=rec.headers))
            pending.append(futs)
        sent = []
        for p, futs in zip(proposals, pending, strict=True):
            metas = await asyncio.gather(*futs)
            landed = [item_pb2.Offset(topic=m.topic, partition=m.partition, offset=m.offset) for m in metas]
            result = build_result(p, landed)
            rec = txlog_record(self._txlog_topic, p.tx, p.digest, result)
            sent.append(
                (result, await producer.send(rec.topic, key=rec.key, value=rec.value, headers=rec.headers))
            )
        out = []
        for result, at in sent:
            md = await at
            out.append(Committed(result=result, txlog_partition=md.partition, txlog_offset=md.offset))
        return out


def _proposals(n: int) -> list[Proposal]:
    out = []
    for i in range(n):
        tx = str(uuid.uuid4())
        ev = item_pb2.Event(
            op=item_pb2.EVENT_OP_SET,
            type=ENTITY,
            id=f"thing-{i}",
            tx=tx,
            source="bench",
            entity=any_pb2.Any(type_url=f"type.googleapis.com/{ENTITY}", value=b"x" * 200),
        )
        out.append(
            Proposal(tx=tx, digest=command_digest("t", tx.encode()), command_type="bench", events=[ev])
        )
    return out


async def _run(bootstrap: str, rounds: int, groups: Sequence[int]) -> None:
    prefix = f"benchab{uuid.uuid4().hex[:6]}."
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix)
    txlog = f"{prefix}myko.tx"
    await ensure_topics(kafka, [TopicSpec(prefix + ENTITY, partitions=3), TopicSpec(txlog, partitions=1)])

    def make(cls: type[TransactionalPublisher], name: str) -> TransactionalPublisher:
        return cls(
            kafka,
            transactional_id=f"{prefix}{name}",
            topic_of=lambda t: prefix + t,
            txlog_topic=txlog,
            max_result_bytes=kafka.max_result_bytes,
        )

    now, before = make(TransactionalPublisher, "now"), make(RecordAfterOffsets, "before")
    await now.start()
    await before.start()
    try:
        print(f"load average at start: {load_average()}")
        for group in groups:
            samples = {"now": Samples(), "before": Samples()}
            for i in range(rounds + 20):
                order = [("now", now), ("before", before)] if i % 2 else [("before", before), ("now", now)]
                for name, pub in order:
                    proposals = _proposals(group)
                    t0 = time.perf_counter()
                    await pub.commit(proposals)
                    if i >= 20:  # warm-up
                        samples[name].add(time.perf_counter() - t0)
            b, n = samples["before"], samples["now"]
            print(
                f"group of {group:3d}: commit p50 before {1000 * b.p50:6.2f} ms, now {1000 * n.p50:6.2f} ms "
                f"({100 * (n.p50 - b.p50) / b.p50:+.0f}%); p99 before {1000 * b.p99:6.2f}, now {1000 * n.p99:6.2f} "
                f"(n={len(n)} each, interleaved)"
            )
        print(f"load average at end: {load_average()}")
    finally:
        await now.stop()
        await before.stop()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.txlog_round_trip", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--rounds", type=int, default=300, help="measured commits per shape and group size")
    ap.add_argument("--group", default="1,64", help="commands per transaction, e.g. 1,64")
    a = ap.parse_args(argv)
    groups = [int(g) for g in a.group.split(",")]
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if external:
        asyncio.run(_run(external, a.rounds, groups))
        return 0
    kafka = LocalKafka()
    print("Starting a local Kafka ...", file=sys.stderr)
    kafka.start()
    try:
        asyncio.run(_run(kafka.bootstrap_servers, a.rounds, groups))
    finally:
        kafka.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
