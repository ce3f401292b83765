"""Unit tests: the fast path that decodes Myko's own SET records agrees with the full checks.

Start-up reads every record through `decode_entity`; the records Myko writes take
a shortcut. Whatever the shortcut accepts must be exactly what the full checks
accept, decoded to the same event, and everything else (every poison record
included) must still be refused with the same defect.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from poison_records import TARGET, ZONE, Raw, entity_poisons, target, valid_set
from targets.v1 import entities_pb2

from myko.entities import EntityType
from myko.errors import BadRecord
from myko.events import (
    H_OP,
    H_PRINCIPAL,
    H_SOURCE,
    H_TS,
    H_TX,
    H_TYPE,
    _decode_checked,
    _decode_own_set,
    decode_entity,
)

TARGETS = EntityType(entities_pb2.Target)


@dataclass
class Fetched:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = field(default_factory=tuple)
    timestamp: int = 1_700_000_000_000


def fetched(raw: Raw, offset: int = 9) -> Fetched:
    # aiokafka hands headers over as a tuple.
    return Fetched(TARGET, 3, offset, raw.key, raw.value, tuple(raw.headers))


def _own(**override: bytes | None) -> list[tuple[str, bytes | None]]:
    headers: dict[str, bytes | None] = {
        H_OP: b"SET",
        H_TYPE: TARGET.encode(),
        H_TX: b"tx-1",
        H_TS: b"1700000000123456789",
        H_SOURCE: b"command_svc.1",
    }
    headers.update({k.replace("_", "-"): v for k, v in override.items()})
    return list(headers.items())


GOOD = target("t-1", "alpha").SerializeToString()

# Records shaped like Myko's own (headers in to_record's order), sound or not.
SHAPES: list[tuple[str, Raw]] = [
    ("as written", valid_set(target("t-1", "alpha"))),
    ("with a principal", Raw(b"t-1", GOOD, [*_own(), (H_PRINCIPAL, b"alice")])),
    ("empty principal", Raw(b"t-1", GOOD, [*_own(), (H_PRINCIPAL, b"")])),
    ("with a trace header", Raw(b"t-1", GOOD, [*_own(), ("traceparent", b"00-ab-cd-01")])),
    ("foreign header null", Raw(b"t-1", GOOD, [*_own(), ("x-other", None)])),
    ("empty type header", Raw(b"t-1", GOOD, _own(myko_type=b""))),
    ("null type header", Raw(b"t-1", GOOD, _own(myko_type=None))),
    ("null op header", Raw(b"t-1", GOOD, _own(myko_op=None))),
    ("null ts header", Raw(b"t-1", GOOD, _own(myko_ts_ns=None))),
    ("null tx header", Raw(b"t-1", GOOD, _own(myko_tx=None))),
    ("principal twice", Raw(b"t-1", GOOD, [*_own(), (H_PRINCIPAL, b"a"), (H_PRINCIPAL, b"b")])),
    ("null principal", Raw(b"t-1", GOOD, [*_own(), (H_PRINCIPAL, None)])),
    ("principal not UTF-8", Raw(b"t-1", GOOD, [*_own(), (H_PRINCIPAL, b"\xc3\x28")])),
    ("source not UTF-8", Raw(b"t-1", GOOD, _own(myko_source=b"\xff"))),
    ("tx again after the first five", Raw(b"t-1", GOOD, [*_own(), (H_TX, b"tx-2")])),
    ("ts of 19 digits past the range", Raw(b"t-1", GOOD, _own(myko_ts_ns=b"9999999999999999999"))),
    ("ts of 20 digits", Raw(b"t-1", GOOD, _own(myko_ts_ns=b"09223372036854775807"))),
    ("ts at the maximum", Raw(b"t-1", GOOD, _own(myko_ts_ns=str(2**63 - 1).encode()))),
    ("ts zero", Raw(b"t-1", GOOD, _own(myko_ts_ns=b"0"))),
    ("ts with a sign", Raw(b"t-1", GOOD, _own(myko_ts_ns=b"+5"))),
    ("type of the zone", Raw(b"t-1", GOOD, _own(myko_type=ZONE.encode()))),
    ("item.type empty", Raw(b"t-2", entities_pb2.Target(item={"id": "t-2"}).SerializeToString(), _own())),
    (
        "item.type of the zone",
        Raw(b"t-3", entities_pb2.Target(item={"id": "t-3", "type": ZONE}).SerializeToString(), _own()),
    ),
    ("key not UTF-8", Raw(b"\xff", GOOD, _own())),
    ("empty key", Raw(b"", GOOD, _own())),
    ("value not protobuf", Raw(b"t-1", b"\xff\xff\xff", _own())),
    ("DEL as a SET's headers", Raw(b"t-1", None, _own(myko_op=b"DEL"))),
    ("DEL with a value", Raw(b"t-1", GOOD, _own(myko_op=b"DEL"))),
    ("headers reordered", Raw(b"t-1", GOOD, list(reversed(_own())))),
    ("four headers", Raw(b"t-1", GOOD, _own()[:4])),
    *[(f"poison: {p.name}", p.record) for p in entity_poisons()],
]


def _outcome(decode: object, record: Fetched) -> object:
    try:
        return decode(record, TARGETS)  # type: ignore[operator]
    except BadRecord as exc:
        return ("refused", exc.defect, exc.message)


@pytest.mark.parametrize(("name", "raw"), SHAPES, ids=[name for name, _ in SHAPES])
def test_decoding_agrees_with_the_full_checks(name: str, raw: Raw) -> None:
    record = fetched(raw)
    assert _outcome(decode_entity, record) == _outcome(_decode_checked, record)


@pytest.mark.parametrize(("name", "raw"), SHAPES, ids=[name for name, _ in SHAPES])
def test_the_fast_path_takes_only_what_the_full_checks_accept(name: str, raw: Raw) -> None:
    record = fetched(raw)
    fast = _decode_own_set(record, TARGETS)
    if fast is not None:
        assert fast == _decode_checked(record, TARGETS)


@pytest.mark.parametrize(
    "name", ["as written", "with a principal", "with a trace header", "empty type header", "ts zero"]
)
def test_what_myko_writes_takes_the_fast_path(name: str) -> None:
    raw = dict(SHAPES)[name]
    found = _decode_own_set(fetched(raw), TARGETS)
    assert found is not None
    event, entity = found
    assert (event.type, event.id, event.offset.partition, event.offset.offset) == (TARGET, "t-1", 3, 9)
    assert event.entity.type_url == TARGETS.type_url and entity.item.id == "t-1"
