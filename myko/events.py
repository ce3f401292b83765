"""The event envelope, and how it maps onto a Kafka record.

key = entity id; value = the serialised entity for SET, null (a tombstone, so
compaction forgets deleted ids) for DEL; headers carry the metadata, so a DEL
still says which tx deleted what, when and from where.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import any_pb2, timestamp_pb2
from google.protobuf.message import Message

from myko.entities import TYPE_URL_PREFIX
from myko.v1 import item_pb2

SET = item_pb2.EVENT_OP_SET
DEL = item_pb2.EVENT_OP_DEL

H_OP = "myko-op"
H_TYPE = "myko-type"
H_TX = "myko-tx"
H_TS = "myko-ts-ns"
H_SOURCE = "myko-source"

_OPS = {b"SET": SET, b"DEL": DEL}
_OP_NAMES = {SET: b"SET", DEL: b"DEL"}

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    topic: str
    key: bytes
    value: bytes | None
    headers: Headers


class BadRecord(ValueError):
    """A record on an entity topic that is not a Myko event."""


def to_record(event: item_pb2.Event, topic: str) -> KafkaRecord:
    headers: Headers = [
        (H_OP, _OP_NAMES[event.op]),
        (H_TYPE, event.type.encode()),
        (H_TX, event.tx.encode()),
        (H_TS, str(event.ts.ToNanoseconds()).encode()),
        (H_SOURCE, event.source.encode()),
    ]
    value = event.entity.value if event.op == SET else None
    return KafkaRecord(topic=topic, key=event.id.encode(), value=value, headers=headers)


def from_record(
    topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, headers: Headers
) -> item_pb2.Event:
    if key is None:
        raise BadRecord(f"{topic}/{partition}@{offset}: record has no key")
    h = dict(headers)
    op = _OPS.get(h.get(H_OP, b"SET" if value is not None else b"DEL"))
    if op is None:
        raise BadRecord(f"{topic}/{partition}@{offset}: unknown {H_OP} header")
    type_name = h.get(H_TYPE, b"").decode()
    ts = timestamp_pb2.Timestamp()
    raw_ts = h.get(H_TS)
    if raw_ts:
        ts.FromNanoseconds(int(raw_ts))
    event = item_pb2.Event(
        op=op,
        type=type_name,
        id=key.decode(),
        tx=h.get(H_TX, b"").decode(),
        ts=ts,
        source=h.get(H_SOURCE, b"").decode(),
        offset=item_pb2.Offset(topic=topic, partition=partition, offset=offset),
    )
    if op == SET:
        if value is None:
            raise BadRecord(f"{topic}/{partition}@{offset}: SET without a value")
        event.entity.CopyFrom(any_pb2.Any(type_url=TYPE_URL_PREFIX + type_name, value=value))
    return event


def set_event(entity: Message, *, tx: str, ts: timestamp_pb2.Timestamp, source: str) -> item_pb2.Event:
    item: item_pb2.MItem = entity.item  # type: ignore[attr-defined]
    packed = any_pb2.Any()
    packed.Pack(entity, deterministic=True)
    return item_pb2.Event(op=SET, type=item.type, id=item.id, tx=tx, ts=ts, source=source, entity=packed)


def del_event(
    type_name: str, entity_id: str, *, tx: str, ts: timestamp_pb2.Timestamp, source: str
) -> item_pb2.Event:
    return item_pb2.Event(op=DEL, type=type_name, id=entity_id, tx=tx, ts=ts, source=source)
