"""The sequential end-to-end measurement (no broker): which commands each figure is taken from.

The probe consumer that splits the path is a reader of its own, woken by every
commit: the headline figures (send -> ack, send -> emission) must come from
commands sent while it is not running, the breakdown from the others.
"""

from __future__ import annotations

import time

from google.protobuf.message import Message

from bench.client import CommandClient, Emission, Needed, WatchStream
from bench.end_to_end import EndToEndResult, KafkaProbe, _Sequence
from myko.v1 import command_pb2, query_pb2


class _Commands(CommandClient):
    """Answers each command at once with an event at the next offset of partition 0."""

    def __init__(self) -> None:
        self.sent = 0

    async def execute(self, command: Message, *, timeout_s: float = 30.0) -> command_pb2.CommandResult:
        self.sent += 1
        result = command_pb2.CommandResult()
        result.events.add().offset.offset = self.sent
        return result


class _Stream(WatchStream):
    """An emission arrives for each command as soon as it is looked for."""

    def __init__(self) -> None:
        self.emissions: list[Emission] = []

    async def first_covering(self, needed: Needed, *, start: int = 0) -> int:
        self.emissions.append(Emission(time.perf_counter(), {}, query_pb2.QueryResult()))
        return len(self.emissions) - 1


class _Probe(KafkaProbe):
    def __init__(self) -> None:
        self.asked = 0

    async def seen_at(self, partition: int, offset: int) -> float:
        self.asked += 1
        return time.perf_counter()


async def test_headline_figures_come_from_commands_without_the_probe() -> None:
    commands, out = _Commands(), EndToEndResult()
    sequence = _Sequence(commands, _Stream(), ["a", "b"], timeout_s=5.0)

    await sequence.run(3, into=out)

    assert commands.sent == 3
    assert len(out.command) == len(out.send_to_emission) == len(out.ack_to_emission) == 3
    assert len(out.send_to_kafka) == len(out.kafka_to_ack) == len(out.kafka_to_emission) == 0
    assert len(out.send_to_emission_probed) == 0


async def test_breakdown_comes_from_other_commands_with_the_probe() -> None:
    commands, out, probe = _Commands(), EndToEndResult(), _Probe()
    sequence = _Sequence(commands, _Stream(), ["a"], timeout_s=5.0)

    await sequence.run(2, into=out)
    await sequence.run(4, probe=probe, into=out)

    assert probe.asked == 4
    assert len(out.send_to_emission) == 2  # not the 4 sent while the probe read
    assert len(out.send_to_kafka) == len(out.kafka_to_ack) == len(out.kafka_to_emission) == 4
    assert len(out.send_to_emission_probed) == 4


async def test_warm_up_commands_are_not_recorded() -> None:
    commands, out = _Commands(), EndToEndResult()
    sequence = _Sequence(commands, _Stream(), ["a"], timeout_s=5.0)

    await sequence.run(5)
    await sequence.run(2, probe=_Probe())

    assert commands.sent == 7
    assert len(out.command) == len(out.send_to_kafka) == 0
