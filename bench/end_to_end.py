"""Sequential commands against an open Watch: command latency and command -> emission latency.

For each command (RecordHits on one of a small set of Targets, round robin,
while one client watches AllTargets over that set):

    send ──Execute──▶ ack                (CommandResult with visible_at)
    send ───────────▶ emission           (first QueryResult whose watermark covers visible_at)
                      ack ─▶ emission    (negative when the emission arrived first)

The next command is sent only after the emission, so samples do not overlap.

Then, on further commands (the breakdown), a probe consumer (read_committed,
like every Myko reader) on the Target topic timestamps when the event became
readable in Kafka, which splits the path into "until committed and readable"
and "from Kafka to the client" on both sides. The probe is not running while
the commands above are timed: it is one more reader woken by every commit, in
the bench's own process, and on a 2-core machine that moved send -> emission
p50 by 0.8-4.5 ms (docs/benchmarks.md, "Issue 11, target 1: where a sequential
command's time goes"); the floor it is compared with has no such extra reader.
Before all that, as many commands the handler rejects (RecordHits with count 0)
time the gRPC round trip and dispatch alone, with no Kafka in the path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc
from aiokafka import AIOKafkaConsumer, TopicPartition
from targets.v1 import commands_pb2, queries_pb2

from bench.client import CommandClient, WatchStream, needed_positions
from bench.cpu import CpuMeter, CpuUse
from bench.samples import Samples


@dataclass
class EndToEndResult:
    command: Samples = field(default_factory=Samples)  # send -> ack
    # send -> INVALID_ARGUMENT from the handler: gRPC and dispatch without Kafka
    rejected: Samples = field(default_factory=Samples)
    ack_to_emission: Samples = field(default_factory=Samples)
    send_to_emission: Samples = field(default_factory=Samples)
    # The breakdown, on other commands than the figures above (the probe is a reader of its own).
    send_to_kafka: Samples = field(default_factory=Samples)  # send -> readable in Kafka (probe)
    kafka_to_ack: Samples = field(default_factory=Samples)
    kafka_to_emission: Samples = field(default_factory=Samples)
    # send -> emission of those commands: beside send_to_emission, what the probe costs.
    send_to_emission_probed: Samples = field(default_factory=Samples)
    emissions_before_ack: int = 0
    cpu: CpuUse | None = None  # during the measured commands

    @classmethod
    def combined(cls, parts: Sequence[EndToEndResult]) -> EndToEndResult:
        """The rounds of one measurement as one: samples joined, CPU summed."""

        def joined(pick: Callable[[EndToEndResult], Samples]) -> Samples:
            return Samples.joined(pick(p) for p in parts)

        cpus = [p.cpu for p in parts if p.cpu is not None]
        return cls(
            command=joined(lambda p: p.command),
            rejected=joined(lambda p: p.rejected),
            ack_to_emission=joined(lambda p: p.ack_to_emission),
            send_to_emission=joined(lambda p: p.send_to_emission),
            send_to_kafka=joined(lambda p: p.send_to_kafka),
            kafka_to_ack=joined(lambda p: p.kafka_to_ack),
            kafka_to_emission=joined(lambda p: p.kafka_to_emission),
            send_to_emission_probed=joined(lambda p: p.send_to_emission_probed),
            emissions_before_ack=sum(p.emissions_before_ack for p in parts),
            cpu=CpuUse.summed(cpus) if cpus else None,
        )


class KafkaProbe:
    """Timestamps records on one topic as a read_committed reader first gets them."""

    def __init__(self, bootstrap: str, topic: str, *, partitions: int) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._partitions = partitions
        self._seen: dict[tuple[int, int], float] = {}
        self._new = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            fetch_max_wait_ms=100,
            client_id="bench-probe",
        )
        await consumer.start()
        tps = [TopicPartition(self._topic, p) for p in range(self._partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name="bench-probe")

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            fetched = await self._consumer.getmany(timeout_ms=1000)
            now = time.perf_counter()
            for records in fetched.values():
                for r in records:
                    self._seen[(r.partition, r.offset)] = now
            if fetched:
                self._new.set()

    async def seen_at(self, partition: int, offset: int) -> float:
        while (partition, offset) not in self._seen:
            self._new.clear()
            await self._new.wait()
        return self._seen.pop((partition, offset))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()


async def _measure_rejected(
    commands: CommandClient, target_id: str, *, count: int, warmup: int, out: Samples
) -> None:
    for i in range(warmup + count):
        t0 = time.perf_counter()
        try:
            await commands.execute(commands_pb2.RecordHits(id=target_id, count=0))
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise
        else:
            raise RuntimeError("RecordHits with count 0 was accepted; expected INVALID_ARGUMENT")
        if i >= warmup:
            out.add(time.perf_counter() - t0)


async def create_targets(commands: CommandClient, ids: list[str]) -> None:
    await commands.execute(
        commands_pb2.ImportTargets(targets=[commands_pb2.SetTarget(id=i, name=i) for i in ids])
    )


async def measure_end_to_end(
    *,
    command_channel: grpc.aio.Channel,
    query_channel: grpc.aio.Channel,
    bootstrap: str,
    target_topic: str,
    partitions: int,
    targets: int,
    count: int,
    warmup: int,
    meter: CpuMeter,
    breakdown_count: int | None = None,
    timeout_s: float = 10.0,
) -> EndToEndResult:
    """`count` commands timed without the probe, then `breakdown_count` (default
    `count`) more with it for the breakdown; the CPU is of the first ones only."""
    commands = CommandClient(command_channel)
    ids = [f"e2e-{i:03d}" for i in range(targets)]
    await create_targets(commands, ids)
    stream = WatchStream(query_channel, queries_pb2.AllTargets())
    out = EndToEndResult()
    await _measure_rejected(commands, ids[0], count=count, warmup=warmup, out=out.rejected)
    try:
        async with asyncio.timeout(timeout_s):
            await stream.wait_emissions(1)
        sequence = _Sequence(commands, stream, ids, timeout_s=timeout_s)
        await sequence.run(warmup)
        meter.start()
        await sequence.run(count, into=out)
        out.cpu = meter.stop()
        probe = KafkaProbe(bootstrap, target_topic, partitions=partitions)
        await probe.start()
        try:
            await sequence.run(min(warmup, 20), probe=probe)
            await sequence.run(count if breakdown_count is None else breakdown_count, probe=probe, into=out)
        finally:
            await probe.stop()
    finally:
        await stream.close()
    return out


class _Sequence:
    """Sequential RecordHits round robin over `ids`, each waiting for its emission."""

    def __init__(
        self, commands: CommandClient, stream: WatchStream, ids: list[str], *, timeout_s: float
    ) -> None:
        self._commands = commands
        self._stream = stream
        self._ids = ids
        self._timeout_s = timeout_s
        self._cursor = len(stream.emissions)
        self._sent = 0

    async def run(
        self, n: int, *, probe: KafkaProbe | None = None, into: EndToEndResult | None = None
    ) -> None:
        """`n` commands, recorded `into` a result when given: with a probe, the
        breakdown only (it is timed apart from the other figures); without, the rest."""
        stream = self._stream
        for _ in range(n):
            t_send = time.perf_counter()
            target = self._ids[self._sent % len(self._ids)]
            self._sent += 1
            result = await self._commands.execute(commands_pb2.RecordHits(id=target, count=1))
            t_ack = time.perf_counter()
            landed = result.events[0].offset
            async with asyncio.timeout(self._timeout_s):
                idx = await stream.first_covering(needed_positions(result.visible_at), start=self._cursor)
                t_kafka = None if probe is None else await probe.seen_at(landed.partition, landed.offset)
            t_emit = stream.emissions[idx].received_s
            self._cursor = idx + 1
            if into is None:
                continue
            if t_kafka is not None:
                into.send_to_kafka.add(t_kafka - t_send)
                into.kafka_to_ack.add(t_ack - t_kafka)
                into.kafka_to_emission.add(t_emit - t_kafka)
                into.send_to_emission_probed.add(t_emit - t_send)
                continue
            if t_emit < t_ack:
                into.emissions_before_ack += 1
            into.command.add(t_ack - t_send)
            into.ack_to_emission.add(t_emit - t_ack)
            into.send_to_emission.add(t_emit - t_send)
