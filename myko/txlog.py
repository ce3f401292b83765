"""The tx log: which transactions have taken effect, and what they returned.

Each successful command writes one record (key = tx, value = its CommandResult,
header = digest of the command) in the same Kafka transaction as its events, so
"the events are committed" and "the tx is known" are one fact. command_svc
rebuilds this map from the topic at start: a tx retried after a restart still
takes effect once. Records expire after MYKO_TX_RETENTION_MS.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterable

from google.protobuf.message import DecodeError

from myko.errors import BadRecord, Defect
from myko.events import KafkaRecord, RawRecord, where
from myko.quarantine import Quarantine
from myko.v1 import command_pb2

log = logging.getLogger(__name__)

H_DIGEST = "myko-digest"


def command_digest(type_url: str, value: bytes) -> bytes:
    return hashlib.sha256(type_url.encode() + b"\0" + value).digest()


def decode_tx_record(record: RawRecord) -> tuple[str, tuple[bytes, bytes] | None]:
    """(tx, (digest, CommandResult bytes)), or (tx, None) for a tombstone; raises BadRecord."""
    at = where(record)
    if record.key is None:
        raise BadRecord(Defect.NO_KEY, f"{at}: tx-log record has no key")
    try:
        tx = record.key.decode("utf-8")
        canonical = str(uuid.UUID(tx)) == tx
    except (UnicodeDecodeError, ValueError):
        canonical = False
    if not canonical:
        raise BadRecord(Defect.BAD_KEY, f"{at}: tx-log key {record.key[:64]!r} is not a canonical UUID")
    if record.value is None:
        return tx, None
    digests = [v for k, v in record.headers if k == H_DIGEST]
    if len(digests) != 1 or digests[0] is None or len(digests[0]) != hashlib.sha256().digest_size:
        raise BadRecord(Defect.BAD_HEADER, f"{at}: tx-log record needs one {H_DIGEST} header of 32 bytes")
    try:
        result = command_pb2.CommandResult.FromString(record.value)
    except DecodeError as exc:
        raise BadRecord(Defect.BAD_VALUE, f"{at}: value is not a CommandResult: {exc}") from None
    if result.tx != tx:
        raise BadRecord(Defect.BAD_VALUE, f"{at}: CommandResult.tx {result.tx[:64]!r} differs from the key")
    return tx, (digests[0], record.value)


class TxLog:
    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._done: dict[str, tuple[bytes, bytes]] = {}

    def get(self, tx: str) -> tuple[bytes, command_pb2.CommandResult] | None:
        found = self._done.get(tx)
        if found is None:
            return None
        return found[0], command_pb2.CommandResult.FromString(found[1])

    def remember(self, tx: str, digest: bytes, result: command_pb2.CommandResult) -> None:
        self._done[tx] = (digest, result.SerializeToString())

    def apply_records(self, records: Iterable[RawRecord], quarantine: Quarantine) -> None:
        for r in records:
            if r.topic != self.topic:
                continue
            decoded = quarantine.decode(r, decode_tx_record)
            if decoded is None:
                continue
            tx, done = decoded
            if done is None:
                self._done.pop(tx, None)
            else:
                self._done[tx] = done

    def record(self, tx: str, digest: bytes, result: command_pb2.CommandResult) -> KafkaRecord:
        return KafkaRecord(
            topic=self.topic, key=tx.encode(), value=result.SerializeToString(), headers=[(H_DIGEST, digest)]
        )

    def __len__(self) -> int:
        return len(self._done)
