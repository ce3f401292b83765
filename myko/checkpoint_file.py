"""A checkpoint file: a Store's state as of a watermark, in a compact binary form.

Layout (all integers little-endian; docs/checkpoints.md):

    b"MYKOCKPT"  u32 format version  u32 header length  header (JSON, UTF-8)  u32 crc32(header)
    frames:      u8 kind  u64 payload length  payload  u32 crc32(payload)

A frame of kind ENTITIES holds one chunk of one entity type: `marshal` of
(type name, ids, encodings, partitions as int32 array bytes, offsets as int64
array bytes, envelopes or None). marshal builds the lists of str and bytes at C
speed, which is the point of the format: loading 1M entities is a few list
loads and three dicts, no per-record Python code. The last frame is END with
the number of entities: a file without it is not whole. Every frame is
checksummed before it is parsed; marshal reads only checksummed bytes that
this code wrote (the directory must be writable by the service alone: a
checksum detects damage, not tampering).

Pure file format: whether a checkpoint fits the topics as they are now is
myko/checkpoints.py's business.
"""

from __future__ import annotations

import json
import marshal
import os
import struct
import sys
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any, BinaryIO

MAGIC = b"MYKOCKPT"
FORMAT_VERSION = 1
_MARSHAL_VERSION = 4
_FRAME = struct.Struct("<BQ")
_U32 = struct.Struct("<I")
_ENTITIES = 1
_END = 2
# Entities per frame: a frame is marshalled in one call that holds the GIL,
# so the service's loop waits at most one chunk's worth (~20-50 ms here).
CHUNK_ENTITIES = 50_000
# A header larger than this is not ours (a damaged length would make us allocate it).
_MAX_HEADER_BYTES = 16 * 1024 * 1024
_MAX_FRAME_BYTES = 1 << 34

Position = tuple[str, int, int]


class CheckpointUnusable(Exception):
    """The file is not a whole, sound checkpoint of a format this code reads."""


@dataclass(frozen=True)
class TopicAtCheckpoint:
    # The topic id (hex) when written; None when the broker reported none.
    topic_id: str | None
    partitions: int
    # partition -> next offset to read (the watermark W) and the log start then.
    watermark: dict[int, int]
    log_start: dict[int, int]


@dataclass(frozen=True)
class Header:
    service: str
    created_ms: int
    # Every record at or past the watermark became readable after this time
    # (the watermark was at or past the topics' ends read at that moment).
    safe_since_ms: int
    # entity type name -> its topic.
    types: dict[str, str]
    topics: dict[str, TopicAtCheckpoint]
    envelopes: bool
    entities: int

    def to_json(self) -> bytes:
        body = {
            "service": self.service,
            "created_ms": self.created_ms,
            "safe_since_ms": self.safe_since_ms,
            "types": self.types,
            "topics": {
                name: {
                    "topic_id": t.topic_id,
                    "partitions": t.partitions,
                    "watermark": {str(p): o for p, o in sorted(t.watermark.items())},
                    "log_start": {str(p): o for p, o in sorted(t.log_start.items())},
                }
                for name, t in sorted(self.topics.items())
            },
            "envelopes": self.envelopes,
            "entities": self.entities,
            "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
        }
        return json.dumps(body, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Header:
        try:
            body = json.loads(raw)
            return cls(
                service=str(body["service"]),
                created_ms=int(body["created_ms"]),
                safe_since_ms=int(body["safe_since_ms"]),
                types={str(k): str(v) for k, v in body["types"].items()},
                topics={
                    str(name): TopicAtCheckpoint(
                        topic_id=None if t["topic_id"] is None else str(t["topic_id"]),
                        partitions=int(t["partitions"]),
                        watermark={int(p): int(o) for p, o in t["watermark"].items()},
                        log_start={int(p): int(o) for p, o in t["log_start"].items()},
                    )
                    for name, t in body["topics"].items()
                },
                envelopes=bool(body["envelopes"]),
                entities=int(body["entities"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointUnusable(f"header is not a checkpoint header: {exc!r}") from None


@dataclass
class TypeState:
    """One entity type's stored state: what Repo keeps (myko/repo.py)."""

    encoded: dict[str, bytes] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)
    envelopes: dict[str, bytes] | None = None


def write(path: Path, header: Header, states: dict[str, TypeState]) -> None:
    """Write the checkpoint to `path` (the caller renames it into place), fsynced."""
    with open(path, "wb") as f:
        head = header.to_json()
        f.write(MAGIC + _U32.pack(FORMAT_VERSION) + _U32.pack(len(head)) + head + _U32.pack(zlib.crc32(head)))
        total = 0
        for name, state in states.items():
            topic = header.types[name]
            ids = list(state.encoded)
            for i in range(0, len(ids), CHUNK_ENTITIES):
                chunk = ids[i : i + CHUNK_ENTITIES]
                _frame(f, _ENTITIES, _entities_payload(name, topic, chunk, state))
                total += len(chunk)
        _frame(f, _END, marshal.dumps(total, _MARSHAL_VERSION))
        f.flush()
        os.fsync(f.fileno())


def _entities_payload(name: str, topic: str, ids: list[str], state: TypeState) -> bytes:
    encoded, positions, envelopes = state.encoded, state.positions, state.envelopes
    partitions = array("i")
    offsets = array("q")
    for entity_id in ids:
        at_topic, partition, offset = positions[entity_id]
        if at_topic != topic:
            raise ValueError(f"{name} {entity_id} is at a position of {at_topic}, not {topic}")
        partitions.append(partition)
        offsets.append(offset)
    if sys.byteorder != "little":
        partitions.byteswap()
        offsets.byteswap()
    kept = None if envelopes is None else [envelopes[i] for i in ids]
    values = [encoded[i] for i in ids]
    return marshal.dumps((name, ids, values, partitions.tobytes(), offsets.tobytes(), kept), _MARSHAL_VERSION)


def _frame(f: BinaryIO, kind: int, payload: bytes) -> None:
    f.write(_FRAME.pack(kind, len(payload)))
    f.write(payload)
    f.write(_U32.pack(zlib.crc32(payload)))


def read_header(path: Path) -> Header:
    with open(path, "rb") as f:
        return _read_header(f)


def _read_header(f: BinaryIO) -> Header:
    start = f.read(16)
    if len(start) < 16 or start[:8] != MAGIC:
        raise CheckpointUnusable("not a checkpoint file (no magic)")
    (version,) = _U32.unpack_from(start, 8)
    if version != FORMAT_VERSION:
        raise CheckpointUnusable(f"format version {version}, this code reads {FORMAT_VERSION}")
    (size,) = _U32.unpack_from(start, 12)
    if size > _MAX_HEADER_BYTES:
        raise CheckpointUnusable(f"header length {size} is not plausible")
    return Header.from_json(_read_checked(f, size, "header"))


def _read_checked(f: BinaryIO, size: int, what: str) -> bytes:
    """`size` bytes and the CRC-32 after them, which must match (else the file is not whole)."""
    data = f.read(size)
    crc = f.read(4)
    if len(data) != size or len(crc) != 4:
        raise CheckpointUnusable(f"truncated in a {what}")
    if _U32.unpack(crc)[0] != zlib.crc32(data):
        raise CheckpointUnusable(f"{what} checksum mismatch")
    return data


def read(path: Path) -> tuple[Header, dict[str, TypeState]]:
    """The header and every type's state; CheckpointUnusable unless the file is whole and sound."""
    with open(path, "rb") as f:
        header = _read_header(f)
        lists: dict[str, list[Any]] = {}
        total = None
        for kind, payload in _frames(f):
            try:
                value = marshal.loads(payload)
            except (ValueError, EOFError, TypeError) as exc:
                raise CheckpointUnusable(f"frame does not parse: {exc}") from None
            if kind == _END:
                total = value
                break
            _add_chunk(lists, header, value)
        if total is None:
            raise CheckpointUnusable("truncated: no end frame")
        if f.read(1):
            raise CheckpointUnusable("bytes after the end frame")
    states = {name: _state(header, name, parts) for name, parts in lists.items()}
    found = sum(len(s.encoded) for s in states.values())
    if total != found or total != header.entities:
        raise CheckpointUnusable(
            f"holds {found} entities, its end frame says {total}, its header {header.entities}"
        )
    return header, states


def _frames(f: BinaryIO) -> Iterator[tuple[int, bytes]]:
    while True:
        head = f.read(_FRAME.size)
        if not head:
            return
        if len(head) != _FRAME.size:
            raise CheckpointUnusable("truncated in a frame header")
        kind, size = _FRAME.unpack(head)
        if kind not in (_ENTITIES, _END) or size > _MAX_FRAME_BYTES:
            raise CheckpointUnusable(f"frame of kind {kind} and length {size} is not ours")
        yield kind, _read_checked(f, size, "frame")


def _add_chunk(lists: dict[str, list[Any]], header: Header, value: Any) -> None:
    if not (isinstance(value, tuple) and len(value) == 6 and value[0] in header.types):
        raise CheckpointUnusable("an entities frame of unknown shape or type")
    name, ids, values, partitions, offsets, envelopes = value
    n = len(ids)
    if not (
        isinstance(ids, list)
        and isinstance(values, list)
        and len(values) == n
        and isinstance(partitions, bytes)
        and len(partitions) == 4 * n
        and isinstance(offsets, bytes)
        and len(offsets) == 8 * n
        and (
            envelopes is None if not header.envelopes else isinstance(envelopes, list) and len(envelopes) == n
        )
    ):
        raise CheckpointUnusable(f"an entities frame of {name} is inconsistent")
    acc = lists.setdefault(name, [[], [], array("i"), array("q"), []])
    acc[0] += ids
    acc[1] += values
    acc[2].frombytes(partitions)
    acc[3].frombytes(offsets)
    if envelopes is not None:
        acc[4] += envelopes


def _state(header: Header, name: str, parts: list[Any]) -> TypeState:
    ids, values, partitions, offsets, envelopes = parts
    if sys.byteorder != "little":
        partitions.byteswap()
        offsets.byteswap()
    topic = header.types[name]
    encoded = dict(zip(ids, values, strict=True))
    if len(encoded) != len(ids):
        raise CheckpointUnusable(f"{name} lists an id twice")
    return TypeState(
        encoded=encoded,
        positions=dict(zip(ids, zip(repeat(topic), partitions, offsets), strict=True)),
        envelopes=dict(zip(ids, envelopes, strict=True)) if header.envelopes else None,
    )
