"""Hand-made records for Myko's topics: sound ones, and one of every kind that must be quarantined.

What another producer (a careless operator, an attacker with write access to
a topic) could put there. Shared by the unit tests (decoders, Store) and the
integration tests (every consumer, against the real broker).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from google.protobuf import timestamp_pb2
from targets.v1 import entities_pb2

from myko.events import H_OP, H_SOURCE, H_TS, H_TX, H_TYPE, set_event, to_record
from myko.leader import LEADER_KEY
from myko.txlog import H_DIGEST, command_digest
from myko.v1 import command_pb2

Headers = list[tuple[str, bytes | None]]

TARGET = "targets.v1.Target"
ZONE = "targets.v1.Zone"


@dataclass(frozen=True)
class Raw:
    """One record to produce (or to hand to a decoder as if fetched)."""

    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)


@dataclass(frozen=True)
class Poison:
    name: str
    record: Raw
    # myko.errors.Defect's value (plain text, so this file also runs against older code).
    defect: str
    # Kafka refuses a record without a key on a compacted topic (all of Myko's
    # are): such a record reaches a reader only if the topic's policy was changed.
    on_compacted_topic: bool = True


def target(entity_id: str, name: str) -> entities_pb2.Target:
    t = entities_pb2.Target(name=name, status=entities_pb2.TARGET_STATUS_ACTIVE)
    t.item.id = entity_id
    t.item.type = TARGET
    t.item.version = 1
    return t


def zone(entity_id: str, name: str) -> entities_pb2.Zone:
    z = entities_pb2.Zone(name=name)
    z.item.id = entity_id
    z.item.type = ZONE
    z.item.version = 1
    return z


def valid_set(entity: entities_pb2.Target | entities_pb2.Zone) -> Raw:
    """Exactly what command_svc would write for this entity."""
    ts = timestamp_pb2.Timestamp()
    ts.GetCurrentTime()
    rec = to_record(set_event(entity, tx=str(uuid.uuid4()), ts=ts, source="another-producer"), "unused")
    return Raw(rec.key, rec.value, list(rec.headers))


def _headers(op: bytes = b"SET", type_name: str = TARGET, **override: bytes | None) -> Headers:
    base: dict[str, bytes | None] = {
        H_OP: op,
        H_TYPE: type_name.encode(),
        H_TX: str(uuid.uuid4()).encode(),
        H_TS: b"1700000000000000000",
        H_SOURCE: b"another-producer",
    }
    base.update({k.replace("_", "-"): v for k, v in override.items()})
    return list(base.items())


def entity_poisons(of: str = TARGET) -> list[Poison]:
    """One record of each way a record on the topic of `of` (Target or Zone) can be broken."""
    make, other, make_other = (target, ZONE, zone) if of == TARGET else (zone, TARGET, target)
    good = make("p-good", "fine").SerializeToString()
    other_value = make_other("p-other-type", "of another type").SerializeToString()

    def h(op: bytes = b"SET", type_name: str = of, **override: bytes | None) -> Headers:
        return _headers(op, type_name, **override)

    return [
        Poison("no key", Raw(None, good, h()), "no-key", on_compacted_topic=False),
        Poison("key not UTF-8", Raw(b"\xff\xfe-id", good, h()), "bad-key"),
        Poison("empty key", Raw(b"", good, h()), "bad-key"),
        Poison("tx header not UTF-8", Raw(b"p-good", good, h(myko_tx=b"\xc3\x28")), "bad-header"),
        Poison("null source header", Raw(b"p-good", good, h(myko_source=None)), "bad-header"),
        Poison("unknown op", Raw(b"p-good", good, h(op=b"PUT")), "bad-header"),
        Poison("op header twice", Raw(b"p-good", good, [*h(), (H_OP, b"DEL")]), "bad-header"),
        Poison("ts not an integer", Raw(b"p-good", good, h(myko_ts_ns=b"noon")), "bad-timestamp"),
        Poison(
            "ts out of range", Raw(b"p-good", good, h(myko_ts_ns=b"99999999999999999999")), "bad-timestamp"
        ),
        Poison("ts negative", Raw(b"p-good", good, h(myko_ts_ns=b"-5")), "bad-timestamp"),
        Poison("type header of another entity", Raw(b"p-good", good, h(type_name=other)), "wrong-type"),
        Poison("SET without a value", Raw(b"p-good", None, h()), "no-value"),
        Poison("DEL with a value", Raw(b"p-good", good, h(op=b"DEL")), "bad-value"),
        Poison("value not protobuf", Raw(b"p-good", b"\xff\xff\xff\xff", h()), "bad-value"),
        Poison("value of another entity type", Raw(b"p-other-type", other_value, h()), "wrong-type"),
        Poison("item.id differs from the key", Raw(b"p-other", good, h()), "bad-value"),
    ]


def tx_result(tx: str, note: str) -> command_pb2.CommandResult:
    """A CommandResult as the tx log holds it (no events: recognisable when replayed)."""
    return command_pb2.CommandResult(tx=tx, command_type=f"targets.v1.SetTarget/{note}")


def valid_tx(tx: str, command_type_url: str, command_value: bytes, note: str) -> Raw:
    digest = command_digest(command_type_url, command_value)
    return Raw(tx.encode(), tx_result(tx, note).SerializeToString(), [(H_DIGEST, digest)])


def tx_poisons() -> list[Poison]:
    tx = str(uuid.uuid4())
    result = tx_result(tx, "poison").SerializeToString()
    digest: Headers = [(H_DIGEST, bytes(32))]
    return [
        Poison("no key", Raw(None, result, digest), "no-key", on_compacted_topic=False),
        Poison("key not UTF-8", Raw(b"\xff" * 36, result, digest), "bad-key"),
        Poison("key not a canonical UUID", Raw(tx.upper().encode(), result, digest), "bad-key"),
        Poison("no digest", Raw(tx.encode(), result, []), "bad-header"),
        Poison("short digest", Raw(tx.encode(), result, [(H_DIGEST, b"abc")]), "bad-header"),
        Poison("digest twice", Raw(tx.encode(), result, digest * 2), "bad-header"),
        Poison("value not a CommandResult", Raw(tx.encode(), b"\xff\xff\xff", digest), "bad-value"),
        Poison(
            "result of another tx",
            Raw(tx.encode(), tx_result(str(uuid.uuid4()), "other").SerializeToString(), digest),
            "bad-value",
        ),
    ]


def lease_poisons() -> list[Poison]:
    return [
        Poison("no key", Raw(None, b"127.0.0.1:1", []), "no-key", on_compacted_topic=False),
        Poison("other key", Raw(b"follower", b"127.0.0.1:1", []), "bad-key"),
        Poison("no address", Raw(LEADER_KEY, None, []), "no-value"),
        Poison("address not UTF-8", Raw(LEADER_KEY, b"\xff\xfe:5", []), "bad-value"),
        Poison("no port", Raw(LEADER_KEY, b"localhost", []), "bad-value"),
        Poison("port out of range", Raw(LEADER_KEY, b"localhost:70000", []), "bad-value"),
        Poison("blank in address", Raw(LEADER_KEY, b"evil host:80", []), "bad-value"),
    ]
