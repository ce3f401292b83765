"""The checkpoint file format (myko/checkpoint_file.py) and the refusal rules (myko/checkpoints.py).

A checkpoint reads back exactly as written; anything short of a whole, sound file
of this format version is refused, never taken for a smaller state.
"""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

import pytest

from myko import checkpoint_file
from myko.checkpoint_file import CheckpointUnusable, Header, TopicAtCheckpoint, TypeState
from myko.checkpoints import refusal
from myko.reader import TopicsAtStart
from myko.topic_identity import TopicIdentity

TOPIC = "p.targets.v1.Target"
ZONES = "p.targets.v1.Zone"
TYPES = {"targets.v1.Target": TOPIC, "targets.v1.Zone": ZONES}
TOPIC_ID = uuid.uuid4()
ZONES_ID = uuid.uuid4()
DAY_MS = 24 * 3600 * 1000
NOW_MS = 1_800_000_000_000


def header(entities: int, **changes: object) -> Header:
    fields: dict[str, object] = {
        "service": "repo_svc",
        "created_ms": NOW_MS - 1000,
        "safe_since_ms": NOW_MS - 2000,
        "types": dict(TYPES),
        "topics": {
            TOPIC: TopicAtCheckpoint(TOPIC_ID.hex, 3, {0: 40, 1: 50, 2: 60}, {0: 0, 1: 0, 2: 0}),
            ZONES: TopicAtCheckpoint(ZONES_ID.hex, 1, {0: 7}, {0: 0}),
        },
        "envelopes": True,
        "entities": entities,
    }
    fields.update(changes)
    return Header(**fields)  # type: ignore[arg-type]


def states(targets: int, *, envelopes: bool = True) -> dict[str, TypeState]:
    ids = [f"t-{i}" for i in range(targets)]
    return {
        "targets.v1.Target": TypeState(
            encoded={i: f"value of {i}".encode() * 3 for i in ids},
            positions={i: (TOPIC, n % 3, 10 * n + 1) for n, i in enumerate(ids)},
            envelopes={i: b"envelope " + i.encode() for i in ids} if envelopes else None,
        ),
        "targets.v1.Zone": TypeState(
            encoded={"z": b"zone"},
            positions={"z": (ZONES, 0, 6)},
            envelopes={"z": b""} if envelopes else None,
        ),
    }


@pytest.fixture
def written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "c.ckpt"
    # Several frames per type: chunks are joined back in order.
    monkeypatch.setattr(checkpoint_file, "CHUNK_ENTITIES", 7)
    checkpoint_file.write(path, header(21), states(20))
    return path


def test_a_checkpoint_reads_back_exactly_as_written(written: Path) -> None:
    head, loaded = checkpoint_file.read(written)
    assert head == header(21)
    expected = states(20)
    assert set(loaded) == set(expected)
    for name, state in expected.items():
        assert loaded[name].encoded == state.encoded
        assert list(loaded[name].encoded) == list(state.encoded)  # order kept
        assert loaded[name].positions == state.positions
        assert loaded[name].envelopes == state.envelopes
    # One topic str shared by every position, not one per entity.
    positions = list(loaded["targets.v1.Target"].positions.values())
    assert positions[0][0] is positions[-1][0]


def test_without_envelopes(tmp_path: Path) -> None:
    path = tmp_path / "c.ckpt"
    checkpoint_file.write(path, header(4, envelopes=False), states(3, envelopes=False))
    _, loaded = checkpoint_file.read(path)
    assert loaded["targets.v1.Target"].envelopes is None
    assert loaded["targets.v1.Target"].encoded == states(3)["targets.v1.Target"].encoded


def test_a_position_on_another_topic_is_not_written(tmp_path: Path) -> None:
    bad = states(2)
    bad["targets.v1.Target"].positions["t-1"] = (ZONES, 0, 1)
    with pytest.raises(ValueError, match="t-1"):
        checkpoint_file.write(tmp_path / "c.ckpt", header(3), bad)


@pytest.mark.parametrize("keep", [0, 5, 16, 200, 600, -4, -1])
def test_a_truncated_file_is_refused(written: Path, keep: int) -> None:
    data = written.read_bytes()
    written.write_bytes(data[:keep])
    with pytest.raises(CheckpointUnusable):
        checkpoint_file.read(written)


@pytest.mark.parametrize("where", [0.0, 0.001, 0.3, 0.6, 0.999])
def test_a_damaged_byte_anywhere_is_refused(written: Path, where: float) -> None:
    data = bytearray(written.read_bytes())
    at = int(len(data) * where)
    data[at] ^= 0x40
    written.write_bytes(bytes(data))
    with pytest.raises(CheckpointUnusable):
        checkpoint_file.read(written)


def test_an_unknown_format_version_is_refused(written: Path) -> None:
    data = bytearray(written.read_bytes())
    data[8:12] = struct.pack("<I", checkpoint_file.FORMAT_VERSION + 1)
    written.write_bytes(bytes(data))
    with pytest.raises(CheckpointUnusable, match="format version"):
        checkpoint_file.read_header(written)


def test_bytes_after_the_end_are_refused(written: Path) -> None:
    written.write_bytes(written.read_bytes() + b"\x00")
    with pytest.raises(CheckpointUnusable):
        checkpoint_file.read(written)


def test_a_count_that_disagrees_with_the_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.ckpt"
    checkpoint_file.write(path, header(99), states(3))
    with pytest.raises(CheckpointUnusable, match="entities"):
        checkpoint_file.read(path)


# --- refusal rules -------------------------------------------------------------


def found(**changes: object) -> TopicsAtStart:
    fields: dict[str, object] = {
        "identities": {TOPIC: TopicIdentity(TOPIC_ID, 3), ZONES: TopicIdentity(ZONES_ID, 1)},
        "log_starts": {(TOPIC, 0): 0, (TOPIC, 1): 0, (TOPIC, 2): 0, (ZONES, 0): 0},
        "ends": {(TOPIC, 0): 40, (TOPIC, 1): 90, (TOPIC, 2): 60, (ZONES, 0): 9},
    }
    fields.update(changes)
    return TopicsAtStart(**fields)  # type: ignore[arg-type]


def judge(
    head: Header, topics: TopicsAtStart, *, retention_ms: int = DAY_MS, now_ms: int = NOW_MS
) -> str | None:
    return refusal(
        head,
        service="repo_svc",
        types=TYPES,
        keep_events=True,
        found=topics,
        delete_retention_ms={TOPIC: retention_ms, ZONES: retention_ms},
        now_ms=now_ms,
    )


def test_a_checkpoint_that_fits_the_topics_is_taken() -> None:
    assert judge(header(1), found()) is None


@pytest.mark.parametrize(
    ("topics", "why"),
    [
        (
            found(identities={TOPIC: TopicIdentity(uuid.uuid4(), 3), ZONES: TopicIdentity(ZONES_ID, 1)}),
            "recreated",
        ),
        (
            found(identities={TOPIC: TopicIdentity(TOPIC_ID, 4), ZONES: TopicIdentity(ZONES_ID, 1)}),
            "partitions",
        ),
        (found(identities={TOPIC: TopicIdentity(None, 3), ZONES: TopicIdentity(ZONES_ID, 1)}), "no topic id"),
        (found(identities={TOPIC: None, ZONES: TopicIdentity(ZONES_ID, 1)}), "no longer exists"),
        (found(identities={ZONES: TopicIdentity(ZONES_ID, 1)}), "could not be described"),
        (
            found(log_starts={(TOPIC, 0): 0, (TOPIC, 1): 51, (TOPIC, 2): 0, (ZONES, 0): 0}),
            "past the checkpoint",
        ),
        (found(log_starts={(TOPIC, 0): 0, (TOPIC, 1): 20, (TOPIC, 2): 0, (ZONES, 0): 0}), "deleted since"),
        (found(ends={(TOPIC, 0): 39, (TOPIC, 1): 90, (TOPIC, 2): 60, (ZONES, 0): 9}), "below the checkpoint"),
    ],
)
def test_a_checkpoint_of_another_history_is_refused(topics: TopicsAtStart, why: str) -> None:
    reason = judge(header(1), topics)
    assert reason is not None and why in reason


def test_a_checkpoint_older_than_delete_retention_is_refused() -> None:
    # delete.retention.ms of a day, less the margin (a tenth, at most an hour): 23 h.
    assert judge(header(1, safe_since_ms=NOW_MS - 23 * 3600 * 1000 + 1), found()) is None
    reason = judge(header(1, safe_since_ms=NOW_MS - 23 * 3600 * 1000), found())
    assert reason is not None and "delete.retention.ms" in reason
    short = judge(header(1, safe_since_ms=NOW_MS - 1800), found(), retention_ms=2000)
    assert short is not None and "delete.retention.ms" in short


def test_unknown_retention_or_another_app_or_service_is_refused() -> None:
    reason = refusal(
        header(1),
        service="repo_svc",
        types=TYPES,
        keep_events=True,
        found=found(),
        delete_retention_ms={TOPIC: DAY_MS},
        now_ms=NOW_MS,
    )
    assert reason is not None and "unknown" in reason
    other_types = {"targets.v1.Target": TOPIC}
    assert refusal(
        header(1),
        service="repo_svc",
        types=other_types,
        keep_events=True,
        found=found(),
        delete_retention_ms={TOPIC: DAY_MS, ZONES: DAY_MS},
        now_ms=NOW_MS,
    )
    assert judge(header(1, service="command_svc"), found())
    assert judge(header(1, envelopes=False), found())
