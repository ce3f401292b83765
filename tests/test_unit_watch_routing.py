"""Watches that select by a field see only the changes that can alter them (myko/repo.py
ChangeBatch), and still emit exactly what a from-scratch evaluation gives, exactly when
it changes: random batches of SETs (moving entities between selections) and DELs."""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable
from typing import Any

import pytest
from target_store import Target, registry
from targets.v1 import entities_pb2
from test_unit_repo import del_ev, set_ev, target, wm

from myko.repo import ChangeBatch, Store

ZONES = ["z0", "z1", "z2", ""]
STATUSES = [entities_pb2.TARGET_STATUS_ACTIVE, entities_pb2.TARGET_STATUS_PAUSED]
IDS = [f"t{i}" for i in range(40)]


def by_name(t: Target) -> tuple[str, str]:
    return (t.name, t.item.id)


def selections() -> list[tuple[dict[str, Hashable], Callable[[Target], bool] | None]]:
    out: list[tuple[dict[str, Hashable], Callable[[Target], bool] | None]] = []
    for z in ZONES:
        out.append(({"zone_id": z}, None))
        for s in STATUSES:
            out.append(({"status": s, "zone_id": z}, None))
    out += [({"item.id": i}, None) for i in IDS[:10]]
    out.append(({"zone_id": "z1"}, lambda t: t.name.endswith("7")))
    out.append(({}, None))  # everything: not routed
    return out


def expected(store: Store, equal: dict[str, Hashable], where: Callable[[Target], bool] | None) -> list[bytes]:
    def matches(t: Target) -> bool:
        for path, value in equal.items():
            obj: Any = t
            for part in path.split("."):
                obj = getattr(obj, part)
            if obj != value:
                return False
        return where is None or where(t)

    found = sorted((t for t in store.of(Target).all() if matches(t)), key=by_name)
    return [t.SerializeToString(deterministic=True) for t in found]


def recorder(out: list[list[bytes]]) -> Callable[[list[Target]], None]:
    return lambda arr: out.append([t.SerializeToString(deterministic=True) for t in arr])


@pytest.mark.parametrize("seed", range(8))
def test_routed_watches_match_a_full_evaluation_after_every_batch(seed: int) -> None:
    rnd = random.Random(seed)
    store = Store(registry())
    repo = store.of(Target)
    watched = selections()
    seen: list[list[list[bytes]]] = []
    for equal, where in watched:
        out: list[list[bytes]] = []
        repo.watch(where, by_name, equal=equal).subscribe(recorder(out))
        seen.append(out)
    offset = 0
    for _ in range(60):
        before = [expected(store, e, w) for e, w in watched]
        events = []
        for _ in range(rnd.randint(1, 25)):
            tid = rnd.choice(IDS)
            if rnd.random() < 0.2:
                events.append(del_ev(tid, offset))
            else:
                t = target(tid, f"n{rnd.randint(0, 9)}", status=rnd.choice(STATUSES), version=offset + 1)
                t.zone_id = rnd.choice(ZONES)
                events.append(set_ev(t, offset))
            offset += 1
        emitted_before = [len(s) for s in seen]
        store.apply_events(events, wm(offset))
        for n, (equal, where) in enumerate(watched):
            now = expected(store, equal, where)
            assert seen[n][-1] == now, f"selection {equal} after a batch of {len(events)}"
            changed = now != before[n]
            assert len(seen[n]) == emitted_before[n] + int(changed), f"selection {equal} emitted {changed=}"


def test_a_batch_groups_each_field_once_and_keeps_its_order() -> None:
    batch = ChangeBatch()
    for i, zone in enumerate(["a", "b", "a", "c"]):
        t = target(f"t{i}", "x")
        t.zone_id = zone
        batch[f"t{i}"] = t
    batch["gone"] = None
    held = {"t1": object(), "gone": object(), "elsewhere": object()}
    relevant = batch.relevant("zone_id", "a", held)
    assert relevant is not None
    # Zone "a" and the held ids that changed, in the batch's order; the deleted one included.
    assert [i for i, _ in relevant] == ["t0", "t1", "t2", "gone"]
    assert batch.relevant("zone_id", "nowhere", {}) == []
