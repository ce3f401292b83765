"""A command's result: built from where its events landed, and bounded in size before that.

The result goes back to the caller; the tx log keeps its logged form (the same
result without the offsets, which are not known yet when the record is sent in
the same produce request as the events: docs/consistency.md, "What a retry
returns"). Its size must fit both the callers' message limits and the tx-log
topic's `max.message.bytes`. Offsets are only known once written, so the check
before writing uses an upper bound: every offset at its largest value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from myko.errors import LimitExceeded
from myko.ports import Proposal
from myko.v1 import command_pb2, item_pb2

_MAX_PARTITION = 2**31 - 1
_MAX_OFFSET = 2**63 - 1


def build_result(proposal: Proposal, landed: Sequence[item_pb2.Offset]) -> command_pb2.CommandResult:
    """The answer to a committed proposal, given where each of its events landed."""
    return completed(logged_result(proposal), [(o.topic, o.partition, o.offset) for o in landed])


def completed(
    logged: command_pb2.CommandResult, landed: Sequence[tuple[str, int, int]]
) -> command_pb2.CommandResult:
    """The full result from its logged form, which is filled in and returned: each event
    gets where it landed (topic, partition, offset), and visible_at the positions after them.

    The publishers keep the logged form they wrote to the tx log and complete it, so a
    result's events are copied once, not twice."""
    after: dict[tuple[str, int], int] = {}
    for ev, (topic, partition, offset) in zip(logged.events, landed, strict=True):
        at = ev.offset
        at.topic = topic
        at.partition = partition
        at.offset = offset
        tp = (topic, partition)
        if after.get(tp, 0) <= offset:
            after[tp] = offset + 1
    positions = logged.visible_at.positions
    for (topic, partition), offset in sorted(after.items()):
        positions.add(topic=topic, partition=partition, offset=offset)
    return logged


def logged_result(proposal: Proposal) -> command_pb2.CommandResult:
    """What the tx log keeps of a proposal's result: everything but where its events landed."""
    return command_pb2.CommandResult(
        tx=proposal.tx, command_type=proposal.command_type, events=proposal.events
    )


def is_logged_form(result: command_pb2.CommandResult) -> bool:
    """True for a result read back from the tx log: events without offsets, no visible_at."""
    return bool(result.events) and not result.visible_at.positions


def without_offsets(result: command_pb2.CommandResult) -> command_pb2.CommandResult:
    """A full result in its logged form (what a replay from the tx log starts from)."""
    out = command_pb2.CommandResult()
    out.CopyFrom(result)
    out.ClearField("visible_at")
    for ev in out.events:
        ev.ClearField("offset")
    return out


def result_size_bound(
    proposal: Proposal, *, topic_of: Callable[[str], str], partitions_of: Callable[[str], int]
) -> int:
    """Bytes the serialised result of `proposal` can take at most, wherever its events land.

    Computed field by field (protobuf's wire format) rather than by building the
    result: a command of 30,000 events costs one ByteSize() per event.
    """
    # Per topic: the bytes of one event's widest offset field, and how many events go there.
    widest: dict[str, int] = {}
    per_topic: dict[str, int] = {}
    total = _field(len(proposal.tx.encode())) if proposal.tx else 0
    total += _field(len(proposal.command_type.encode())) if proposal.command_type else 0
    for ev in proposal.events:
        topic = topic_of(ev.type)
        offset = widest.get(topic)
        if offset is None:
            offset = widest[topic] = _field(_widest_offset(topic))
            per_topic[topic] = 0
        per_topic[topic] += 1
        total += _field(ev.ByteSize() + offset)
    # visible_at: one position per partition written, at most.
    positions = sum(min(count, partitions_of(topic)) * widest[topic] for topic, count in per_topic.items())
    return total + _field(positions)


def check_result_size(
    proposal: Proposal,
    *,
    topic_of: Callable[[str], str],
    partitions_of: Callable[[str], int],
    max_bytes: int,
    limit_name: str,
) -> int:
    """The size bound of the proposal's result; LimitExceeded, before anything is written,
    when it could exceed `max_bytes`."""
    bound = result_size_bound(proposal, topic_of=topic_of, partitions_of=partitions_of)
    if bound > max_bytes:
        raise LimitExceeded(
            limit_name,
            f"result: {proposal.command_type} would return and log up to {bound} bytes "
            f"({len(proposal.events)} events), over the {limit_name} limit of {max_bytes}; "
            "split it into smaller commands",
        )
    return bound


def _widest_offset(topic: str) -> int:
    """item_pb2.Offset(topic=topic, partition=_MAX_PARTITION, offset=_MAX_OFFSET).ByteSize(),
    without building it: one tag byte per field, the topic length-delimited, two varints."""
    n = len(topic.encode())
    return (_field(n) if n else 0) + 1 + _varint_len(_MAX_PARTITION) + 1 + _varint_len(_MAX_OFFSET)


def _field(size: int) -> int:
    """A length-delimited field of `size` bytes: tag (field numbers < 16), length, bytes."""
    return 1 + _varint_len(size) + size


def _varint_len(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)
