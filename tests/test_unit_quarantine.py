"""Unit tests: every kind of undecodable record is refused alone, counted, logged within a budget."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest
from poison_records import (
    TARGET,
    Poison,
    Raw,
    entity_poisons,
    lease_poisons,
    target,
    tx_poisons,
    valid_set,
    valid_tx,
)
from targets.v1 import entities_pb2

from myko.entities import EntityRegistry, EntityType
from myko.errors import BadRecord, Defect, MykoError
from myko.events import decode_entity
from myko.leader import LEADER_KEY, decode_lease_record
from myko.memory_log import MemoryLog
from myko.quarantine import H_DEFECT, H_KEY, H_OFFSET, H_VALUE, Quarantine, QuarantineWriter, _LogBudget
from myko.repo import Store
from myko.settings import KafkaSettings
from myko.txlog import TxLog, TxLogLimits, decode_tx_record
from myko.watermark import Watermark


@dataclass
class Fetched:
    """A record as the consumer hands it over."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    timestamp: int = 1_700_000_000_000


def fetched(raw: Raw, offset: int, topic: str = TARGET) -> Fetched:
    return Fetched(topic, 0, offset, raw.key, raw.value, list(raw.headers))


def names(poisons: list[Poison]) -> list[str]:
    return [p.name for p in poisons]


def test_bad_record_is_in_the_one_hierarchy() -> None:
    assert issubclass(BadRecord, MykoError)


@pytest.mark.parametrize("poison", entity_poisons(), ids=names(entity_poisons()))
def test_each_bad_entity_record_is_refused_with_its_defect(poison: Poison) -> None:
    with pytest.raises(BadRecord) as err:
        decode_entity(fetched(poison.record, 7), EntityType(entities_pb2.Target))
    assert err.value.defect == poison.defect
    assert f"{TARGET}/0@7" in err.value.message


def test_a_sound_record_decodes_to_event_and_entity() -> None:
    t = target("t-1", "alpha")
    event, entity = decode_entity(fetched(valid_set(t), 3), EntityType(entities_pb2.Target))
    assert entity == t
    assert (event.id, event.type, event.offset.offset) == ("t-1", TARGET, 3)


def test_a_tombstone_without_headers_is_a_delete() -> None:
    # What an operator's console producer writes to remove an entity.
    event, entity = decode_entity(fetched(Raw(b"t-1", None), 4), EntityType(entities_pb2.Target))
    assert entity is None and event.id == "t-1"


@pytest.mark.parametrize("poison", tx_poisons(), ids=names(tx_poisons()))
def test_each_bad_tx_log_record_is_refused_with_its_defect(poison: Poison) -> None:
    with pytest.raises(BadRecord) as err:
        decode_tx_record(fetched(poison.record, 2, topic="myko.tx"))
    assert err.value.defect == poison.defect


@pytest.mark.parametrize("poison", lease_poisons(), ids=names(lease_poisons()))
def test_each_bad_lease_record_is_refused_with_its_defect(poison: Poison) -> None:
    with pytest.raises(BadRecord) as err:
        decode_lease_record(fetched(poison.record, 2, topic="myko.command-lease"))
    assert err.value.defect == poison.defect


def test_a_sound_lease_record_gives_the_address() -> None:
    assert decode_lease_record(fetched(Raw(LEADER_KEY, b"command-1:50051"), 0)) == "command-1:50051"


def store() -> Store:
    reg = EntityRegistry()
    reg.add(entities_pb2.Target)
    return Store(reg, quarantine=Quarantine("test"))


def test_store_applies_the_records_around_every_bad_one() -> None:
    s = store()
    poisons = entity_poisons()
    batch: list[Fetched] = []
    for i, p in enumerate(poisons):
        batch.append(fetched(valid_set(target(f"t-{i}", f"before {p.name}")), len(batch)))
        batch.append(fetched(p.record, len(batch)))
    batch.append(fetched(valid_set(target("t-last", "last")), len(batch)))
    s.apply_records(batch, Watermark({(TARGET, 0): len(batch)}))

    assert sorted(s.of(entities_pb2.Target).ids()) == sorted(
        [f"t-{i}" for i in range(len(poisons))] + ["t-last"]
    )
    assert s.watermark.get((TARGET, 0)) == len(batch)
    counted = s.quarantine.stats.records
    assert sum(counted.values()) == len(poisons)
    for defect in {p.defect for p in poisons}:
        assert counted[(TARGET, str(defect))] == sum(1 for p in poisons if p.defect == defect)


def test_a_decoder_bug_costs_one_record_only() -> None:
    q = Quarantine("test")

    def broken(record: object) -> str:
        raise KeyError("oops")

    assert q.decode(fetched(Raw(b"k", b"v"), 0), broken) is None
    assert q.stats.records[(TARGET, str(Defect.UNDECODABLE))] == 1


async def test_tx_log_keeps_the_sound_records_around_bad_ones() -> None:
    log = TxLog(
        "myko.tx",
        TxLogLimits(max_age_ms=60_000, max_txs=100),
        MemoryLog(),
        clock_ms=lambda: Fetched.timestamp,
    )
    q = Quarantine("test")
    before = valid_tx("00000000-0000-4000-8000-000000000001", "type/x", b"a", "one")
    after = valid_tx("00000000-0000-4000-8000-000000000002", "type/x", b"b", "two")
    batch = [fetched(before, 0, "myko.tx")]
    batch += [fetched(p.record, i + 1, "myko.tx") for i, p in enumerate(tx_poisons())]
    batch.append(fetched(after, len(batch), "myko.tx"))
    log.apply_records(batch, q)
    assert len(log) == 2
    found = log.lookup("00000000-0000-4000-8000-000000000002")
    assert found is not None and (await log.result(found)).command_type.endswith("/two")
    assert q.stats.total == len(tx_poisons())


def test_log_lines_are_rate_limited_and_the_rest_counted(caplog: pytest.LogCaptureFixture) -> None:
    q = Quarantine("test", log_per_s=2)
    bad = entity_poisons()[1].record
    with caplog.at_level(logging.WARNING, logger="myko.quarantine"):
        for i in range(1000):
            q.decode(fetched(bad, i), lambda r: decode_entity(r, EntityType(entities_pb2.Target)))
    lines = [r for r in caplog.records if "bad record" in r.getMessage()]
    # A burst of ten seconds' worth, then nothing until time passes; every record is counted.
    assert len(lines) == 20
    assert "bad-key" in lines[0].getMessage() and f"{TARGET}/0@0" in lines[0].getMessage()
    assert q.stats.total == 1000
    assert q.stats.log_lines_suppressed == 980


def test_log_budget_refills_with_time() -> None:
    now = [0.0]
    budget = _LogBudget(1.0, clock=lambda: now[0])
    assert sum(budget.take() for _ in range(50)) == 10
    now[0] += 3.0
    assert sum(budget.take() for _ in range(50)) == 3


def test_copy_keeps_the_record_its_coordinates_and_why() -> None:
    writer = QuarantineWriter(KafkaSettings(), "q", client_id="t", stats=Quarantine("x").stats)
    q = Quarantine("repo_svc", writer=writer, copy_topics=[TARGET])
    poison = entity_poisons()[11]  # SET without a value: null value and a key
    q.decode(fetched(poison.record, 41), lambda r: decode_entity(r, EntityType(entities_pb2.Target)))
    (copy,) = writer._pending
    headers = dict(copy.headers)
    assert copy.key == f"{TARGET}/0/41/1700000000000".encode()
    assert headers[H_OFFSET] == b"41" and headers[H_DEFECT] == b"no-value"
    assert headers[H_KEY] == poison.record.key
    # A null value is copied as empty plus a marker: a null would be a tombstone on a compacted topic.
    assert copy.value == b"" and headers[H_VALUE] == b"null"
    # The original headers come first, unchanged.
    assert copy.headers[: len(poison.record.headers)] == poison.record.headers
