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
from collections.abc import Iterable
from typing import Any

from myko.events import KafkaRecord
from myko.v1 import command_pb2

log = logging.getLogger(__name__)

H_DIGEST = "myko-digest"


def command_digest(type_url: str, value: bytes) -> bytes:
    return hashlib.sha256(type_url.encode() + b"\0" + value).digest()


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

    def apply_records(self, records: Iterable[Any]) -> None:
        for r in records:
            if r.topic != self.topic or r.key is None:
                continue
            if r.value is None:
                self._done.pop(r.key.decode(), None)
                continue
            digest = dict(r.headers).get(H_DIGEST, b"")
            self._done[r.key.decode()] = (digest, r.value)

    def record(self, tx: str, digest: bytes, result: command_pb2.CommandResult) -> KafkaRecord:
        return KafkaRecord(
            topic=self.topic, key=tx.encode(), value=result.SerializeToString(), headers=[(H_DIGEST, digest)]
        )

    def __len__(self) -> int:
        return len(self._done)
