"""What the fault test's clients sent and what was acknowledged, and what may be observed.

Every command is entered when it is first sent (issued) and again when the
cluster acknowledges it. From that, any state a Watch emits at a watermark W
is bounded:

- above: a target's hit_count cannot exceed the sum of every increment issued
  for it so far (acknowledged or still in flight), and only issued creates
  (and the saga's perimeter targets, one per issued zone) can exist;
- below: every acknowledged command whose write lies below W (its
  `visible_at` is covered by W) must be reflected.

Commands that were sent but never acknowledged are allowed either way, which
is exactly the uncertainty a client has after a timeout.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from targets.v1 import commands_pb2, entities_pb2

from myko.v1 import command_pb2, item_pb2

Target = entities_pb2.Target
Position = tuple[str, int]


def positions(wm: item_pb2.Watermark) -> dict[Position, int]:
    return {(o.topic, o.partition): o.offset for o in wm.positions}


def covers(wm: Mapping[Position, int], visible_at: item_pb2.Watermark) -> bool:
    return all(wm.get((o.topic, o.partition), 0) >= o.offset for o in visible_at.positions)


@dataclass
class Ledger:
    initial: dict[str, str] = field(default_factory=dict)  # target id -> name
    issued_hits: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    acked_hits: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # target id -> [(visible_at, count)] of acknowledged RecordHits
    hit_acks: dict[str, list[tuple[item_pb2.Watermark, int]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    issued_names: set[str] = field(default_factory=set)
    # created target id -> (name, visible_at)
    created: dict[str, tuple[str, item_pb2.Watermark]] = field(default_factory=dict)
    issued_zones: set[str] = field(default_factory=set)
    acked_zones: set[str] = field(default_factory=set)
    acked_txs: set[str] = field(default_factory=set)
    # Acknowledged txs that wrote one Target event each.
    target_txs: set[str] = field(default_factory=set)
    fence: dict[Position, int] = field(default_factory=dict)

    # -- recording ------------------------------------------------------------------------------

    def _ack(self, result: command_pb2.CommandResult) -> None:
        assert result.tx not in self.acked_txs, f"tx {result.tx} acknowledged twice"
        self.acked_txs.add(result.tx)
        for tp, off in positions(result.visible_at).items():
            self.fence[tp] = max(self.fence.get(tp, 0), off)

    def ack_initial(self, result: command_pb2.CommandResult, name: str) -> None:
        self._ack(result)
        self.target_txs.add(result.tx)
        self.initial[result.events[0].id] = name

    def issue_hits(self, target_id: str, count: int) -> None:
        self.issued_hits[target_id] += count

    def ack_hits(self, result: command_pb2.CommandResult, target_id: str, count: int) -> None:
        self._ack(result)
        self.target_txs.add(result.tx)
        self.acked_hits[target_id] += count
        self.hit_acks[target_id].append((result.visible_at, count))

    def issue_create(self, name: str) -> None:
        self.issued_names.add(name)

    def ack_create(self, result: command_pb2.CommandResult, name: str) -> None:
        self._ack(result)
        self.target_txs.add(result.tx)
        self.created[result.events[0].id] = (name, result.visible_at)

    def issue_zone(self, zone_id: str) -> None:
        self.issued_zones.add(zone_id)

    def ack_zone(self, result: command_pb2.CommandResult, zone_id: str) -> None:
        self._ack(result)
        self.acked_zones.add(zone_id)

    @property
    def fence_proto(self) -> item_pb2.Watermark:
        return item_pb2.Watermark(
            positions=[
                item_pb2.Offset(topic=t, partition=p, offset=o) for (t, p), o in sorted(self.fence.items())
            ]
        )

    # -- judging observations -------------------------------------------------------------------

    def max_targets(self) -> int:
        return len(self.initial) + len(self.issued_names) + len(self.issued_zones)

    def min_targets(self, wm: Mapping[Position, int]) -> int:
        return len(self.initial) + sum(1 for _, at in self.created.values() if covers(wm, at))

    def judge_targets(self, targets: Sequence[Target], wm: Mapping[Position, int]) -> list[str]:
        """What is wrong with `targets` as the state at watermark `wm` (empty when nothing)."""
        wrong: list[str] = []
        by_id = {t.item.id: t for t in targets}
        if len(by_id) != len(targets):
            wrong.append("an id appears twice in one emission")
        if len(targets) > self.max_targets():
            wrong.append(f"{len(targets)} targets, more than the {self.max_targets()} ever issued")
        for t in targets:
            if t.item.id in self.initial:
                issued = self.issued_hits.get(t.item.id, 0)
                if t.hit_count > issued:
                    wrong.append(f"{t.name}: hit_count {t.hit_count} > {issued} issued")
                floor = sum(n for at, n in self.hit_acks.get(t.item.id, ()) if covers(wm, at))
                if t.hit_count < floor:
                    wrong.append(f"{t.name}: hit_count {t.hit_count} < {floor} acknowledged below {wm}")
            elif t.zone_id:
                if t.zone_id not in self.issued_zones:
                    wrong.append(f"target {t.item.id} in a zone {t.zone_id} never issued")
            elif t.name not in self.issued_names:
                wrong.append(f"target {t.name!r} ({t.item.id}) was never issued")
            elif t.hit_count != 0:
                wrong.append(f"created target {t.name!r} has hits {t.hit_count}")
        for target_id in self.initial:
            if target_id not in by_id:
                wrong.append(f"initial target {self.initial[target_id]} missing")
        for target_id, (name, at) in self.created.items():
            if covers(wm, at) and target_id not in by_id:
                wrong.append(f"acknowledged create {name!r} missing at {wm}")
        return wrong

    def judge_total(self, total: int, wm: Mapping[Position, int]) -> list[str]:
        wrong = []
        if total > self.max_targets():
            wrong.append(f"total {total} > {self.max_targets()} ever issued")
        if total < self.min_targets(wm):
            wrong.append(f"total {total} < {self.min_targets(wm)} acknowledged below {wm}")
        return wrong

    def judge_final(self, targets: Sequence[Target]) -> list[str]:
        """Once every command is acknowledged, the state must be exactly this."""
        wrong = self.judge_targets(targets, self.fence)
        by_id = {t.item.id: t for t in targets}
        for target_id, name in self.initial.items():
            t = by_id.get(target_id)
            if t is not None and t.hit_count != self.acked_hits.get(target_id, 0):
                wrong.append(
                    f"{name}: hit_count {t.hit_count} != {self.acked_hits.get(target_id, 0)} acknowledged"
                )
        perimeters = defaultdict(list)
        for t in targets:
            if t.zone_id:
                perimeters[t.zone_id].append(t)
        for zone_id in self.acked_zones:
            if len(perimeters.get(zone_id, [])) != 1:
                wrong.append(f"zone {zone_id} has {len(perimeters.get(zone_id, []))} perimeter targets")
        expected = len(self.initial) + len(self.created) + len(self.acked_zones)
        if len(targets) != expected:
            wrong.append(f"{len(targets)} targets, expected {expected}")
        return wrong


class Executes(Protocol):
    """A client that sends a command with its tx until it is acknowledged."""

    async def execute(self, command: object, tx: str) -> command_pb2.CommandResult: ...


async def client_loop(
    k: int, client: Executes, ledger: Ledger, targets: list[str], stop: asyncio.Event, *, pause_s: float
) -> int:
    """Commands one after the other until `stop`: hits, creates, and (client 0) zones the saga expands."""
    rng = random.Random(k)
    sent = 0
    while not stop.is_set():
        tx = str(uuid.uuid4())
        if sent % 10 == 3:
            name = f"c{k}-{sent}"
            ledger.issue_create(name)
            ledger.ack_create(await client.execute(commands_pb2.SetTarget(name=name), tx), name)
        elif k == 0 and sent % 12 == 7:
            zone_id = f"z{sent}"
            ledger.issue_zone(zone_id)
            ledger.ack_zone(await client.execute(commands_pb2.SetZone(id=zone_id, name=zone_id), tx), zone_id)
        else:
            target_id, count = rng.choice(targets), rng.randint(1, 5)
            ledger.issue_hits(target_id, count)
            result = await client.execute(commands_pb2.RecordHits(id=target_id, count=count), tx)
            ledger.ack_hits(result, target_id, count)
        sent += 1
        await asyncio.sleep(pause_s)
    return sent
