"""The tx log: which transactions took effect, and what they returned, within a bounded window.

Each committed command writes one record (key = tx, value = its CommandResult,
header = digest of the command) in the same transaction as its events, so "the
events are committed" and "the tx is known" are one fact.

In memory, command_svc keeps a bounded index of the most recent txs: per tx its
digest, when it was committed and where its record is (about 200 bytes),
never the results themselves beyond a small cache of recent ones. A retry of an
indexed tx is answered with the stored result, read back from the topic when it
is not cached. The index holds the txs committed within the last `max_age_ms`
AND among the last `max_txs` (docs/consistency.md states the guarantee); at
start the feed reads only that window of the topic (`read_window`), so neither
memory nor start-up time grows with the number of commands ever run.
"""

from __future__ import annotations

import hashlib
import logging
import struct
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from myko.errors import BadRecord, Defect, Rejected
from myko.events import KafkaRecord, RawRecord, where
from myko.ports import ReadWindow, RecordSource
from myko.quarantine import Quarantine
from myko.v1 import command_pb2

log = logging.getLogger(__name__)

H_DIGEST = "myko-digest"

# digest, committed at (ms), partition, offset of the tx's record
_ENTRY = struct.Struct("<32sqiq")


def command_digest(type_url: str, value: bytes) -> bytes:
    return hashlib.sha256(type_url.encode() + b"\0" + value).digest()


def decode_tx_record(record: RawRecord) -> tuple[str, tuple[bytes, bytes] | None]:
    """(tx, (digest, CommandResult bytes)), or (tx, None) for a tombstone; raises BadRecord."""
    if record.key is None:
        raise BadRecord(Defect.NO_KEY, f"{where(record)}: tx-log record has no key")
    try:
        tx = record.key.decode("utf-8")
        canonical = str(uuid.UUID(tx)) == tx
    except (UnicodeDecodeError, ValueError):
        canonical = False
    if not canonical:
        raise BadRecord(
            Defect.BAD_KEY, f"{where(record)}: tx-log key {record.key[:64]!r} is not a canonical UUID"
        )
    if record.value is None:
        return tx, None
    digests = [v for k, v in record.headers if k == H_DIGEST]
    if len(digests) != 1 or digests[0] is None or len(digests[0]) != hashlib.sha256().digest_size:
        raise BadRecord(
            Defect.BAD_HEADER, f"{where(record)}: tx-log record needs one {H_DIGEST} header of 32 bytes"
        )
    try:
        result = command_pb2.CommandResult.FromString(record.value)
    except DecodeError as exc:
        raise BadRecord(Defect.BAD_VALUE, f"{where(record)}: value is not a CommandResult: {exc}") from None
    if result.tx != tx:
        raise BadRecord(
            Defect.BAD_VALUE, f"{where(record)}: CommandResult.tx {result.tx[:64]!r} differs from the key"
        )
    return tx, (digests[0], record.value)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def txlog_record(topic: str, tx: str, digest: bytes, result: command_pb2.CommandResult) -> KafkaRecord:
    """How one committed tx is written to the tx-log topic."""
    return KafkaRecord(
        topic=topic, key=tx.encode(), value=result.SerializeToString(), headers=[(H_DIGEST, digest)]
    )


@dataclass(frozen=True)
class TxLogLimits:
    """The dedupe window (by age and by count) and the cache of recent results."""

    max_age_ms: int
    max_txs: int
    result_cache_bytes: int = 16 * 1024 * 1024

    def read_window(self) -> ReadWindow:
        # A transaction's commit marker takes an offset too: 2N offsets back hold at
        # least the last N txs (unless aborted transactions took some of them).
        return ReadWindow(max_age_ms=self.max_age_ms, max_offsets=2 * self.max_txs)


@dataclass(frozen=True)
class TxEntry:
    """A tx that took effect: the digest of its command and where its result is stored."""

    tx: str
    digest: bytes
    committed_at_ms: int
    partition: int
    offset: int


class TxLog:
    def __init__(
        self,
        topic: str,
        limits: TxLogLimits,
        source: RecordSource,
        *,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.topic = topic
        self.limits = limits
        self._source = source
        self._clock_ms = clock_ms
        # tx -> packed entry, oldest first (commit order as the log shows it).
        self._index: OrderedDict[bytes, bytes] = OrderedDict()
        # tx -> serialised result, for the most recent txs only.
        self._results: OrderedDict[bytes, bytes] = OrderedDict()
        self._results_bytes = 0

    def lookup(self, tx: str) -> TxEntry | None:
        """The entry of a tx within the window, or None."""
        self._expire()
        packed = self._index.get(tx.encode())
        if packed is None:
            return None
        digest, at_ms, partition, offset = _ENTRY.unpack(packed)
        if self._clock_ms() - at_ms > self.limits.max_age_ms:
            return None  # behind a younger entry (several tx-log partitions), yet too old
        return TxEntry(tx, digest, at_ms, partition, offset)

    async def result(self, entry: TxEntry) -> command_pb2.CommandResult:
        """The result the tx returned when it was committed, byte for byte."""
        key = entry.tx.encode()
        value = self._results.get(key)
        if value is None:
            fetched = await self._source.fetch(self.topic, entry.partition, entry.offset)
            if fetched is None or fetched[0] != key or fetched[1] is None:
                # Within the window the record is kept (the topic's retention is longer);
                # it can only be gone when the topic was deleted or truncated by hand.
                raise Rejected(f"tx {entry.tx} already took effect, but its stored result is gone")
            value = fetched[1]
        return command_pb2.CommandResult.FromString(value)

    def remember(
        self, tx: str, digest: bytes, result: command_pb2.CommandResult, partition: int, offset: int
    ) -> None:
        """Index a tx the writer has just committed (before the feed reads its record back)."""
        value = result.SerializeToString() if self.limits.result_cache_bytes else b""
        self._add(tx.encode(), digest, self._clock_ms(), partition, offset, value)

    def apply_records(self, records: Iterable[RawRecord], quarantine: Quarantine) -> None:
        index = self._index
        for r in records:
            if r.topic != self.topic:
                continue
            if r.value is not None and r.key is not None:
                packed = index.get(r.key)
                if packed is not None and _ENTRY.unpack(packed)[2:] == (r.partition, r.offset):
                    # The record the writer remembered when it committed it (the leader
                    # reading its own writes back): indexed already, nothing to decode.
                    continue
            decoded = quarantine.decode(r, decode_tx_record)
            if decoded is None:
                continue
            tx, done = decoded
            if done is None:
                self._forget(tx.encode())
            else:
                digest, value = done
                self._add(tx.encode(), digest, int(r.timestamp), r.partition, r.offset, value)

    def __len__(self) -> int:
        return len(self._index)

    @property
    def cached_result_bytes(self) -> int:
        return self._results_bytes

    def _add(self, key: bytes, digest: bytes, at_ms: int, partition: int, offset: int, value: bytes) -> None:
        if key in self._index:
            return  # the writer remembered it before the feed read it back
        if self._clock_ms() - at_ms > self.limits.max_age_ms:
            return  # older than the window (the start of a windowed read)
        self._index[key] = _ENTRY.pack(digest, at_ms, partition, offset)
        while len(self._index) > self.limits.max_txs:
            self._forget(next(iter(self._index)))
        self._expire()
        if 0 < len(value) <= self.limits.result_cache_bytes:
            self._results[key] = value
            self._results_bytes += len(value)
            while self._results_bytes > self.limits.result_cache_bytes:
                _, old = self._results.popitem(last=False)
                self._results_bytes -= len(old)

    def _expire(self) -> None:
        horizon = self._clock_ms() - self.limits.max_age_ms
        while self._index:
            key, packed = next(iter(self._index.items()))
            if _ENTRY.unpack(packed)[1] >= horizon:
                return
            self._forget(key)

    def _forget(self, key: bytes) -> None:
        self._index.pop(key, None)
        value = self._results.pop(key, None)
        if value is not None:
            self._results_bytes -= len(value)
