"""Positions in Kafka: how far a reader has read, and whether a write is visible."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable, Mapping

from myko.errors import DeadlineExceeded, InvalidArgument, echo
from myko.v1 import item_pb2

TopicPartition = tuple[str, int]


class Watermark:
    """Next offset to read, per (topic, partition). Immutable once built."""

    __slots__ = ("_pos",)

    def __init__(self, positions: Mapping[TopicPartition, int] | None = None) -> None:
        self._pos: dict[TopicPartition, int] = dict(positions or {})

    @property
    def positions(self) -> Mapping[TopicPartition, int]:
        return self._pos

    def get(self, tp: TopicPartition) -> int:
        return self._pos.get(tp, 0)

    def covers(self, needed: Mapping[TopicPartition, int]) -> bool:
        """True when every needed position has been reached."""
        return all(self._pos.get(tp, 0) >= pos for tp, pos in needed.items())

    def advanced(self, updates: Mapping[TopicPartition, int]) -> Watermark:
        merged = dict(self._pos)
        for tp, pos in updates.items():
            if pos > merged.get(tp, -1):
                merged[tp] = pos
        return Watermark(merged)

    def to_proto(self) -> item_pb2.Watermark:
        return item_pb2.Watermark(
            positions=[
                item_pb2.Offset(topic=t, partition=p, offset=o) for (t, p), o in sorted(self._pos.items())
            ]
        )

    @classmethod
    def from_proto(cls, wm: item_pb2.Watermark) -> Watermark:
        return cls({(o.topic, o.partition): o.offset for o in wm.positions})

    @classmethod
    def after(cls, offsets: Iterable[item_pb2.Offset]) -> Watermark:
        """The positions a reader must reach to have read every given record."""
        pos: dict[TopicPartition, int] = {}
        for o in offsets:
            tp = (o.topic, o.partition)
            pos[tp] = max(pos.get(tp, 0), o.offset + 1)
        return cls(pos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Watermark) and other._pos == self._pos

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._pos.items())))

    def __repr__(self) -> str:
        return f"Watermark({self._pos})"


def fence_of(
    wm: item_pb2.Watermark, *, topics: Collection[str], known: Watermark
) -> dict[TopicPartition, int]:
    """The positions an `at_least` asks for, refused when no reader could ever reach them.

    Each position must name a topic this reader reads (`topics`) and a partition
    it has (once `known` lists any partition of that topic: before catching up it
    may list none), with offsets and partitions >= 0; the field is named in the
    INVALID_ARGUMENT. Such a fence would otherwise hold its call until the deadline.
    """
    parts: dict[str, set[int]] = {}
    for t, p in known.positions:
        parts.setdefault(t, set()).add(p)
    out: dict[TopicPartition, int] = {}
    for i, o in enumerate(wm.positions):
        field = f"at_least.positions[{i}]"
        if o.topic not in topics:
            raise InvalidArgument(f"{field}.topic", f"{echo(o.topic)} is not a topic this service reads")
        if o.partition < 0 or (o.topic in parts and o.partition not in parts[o.topic]):
            raise InvalidArgument(f"{field}.partition", f"{o.topic} has no partition {o.partition}")
        if o.offset < 0:
            raise InvalidArgument(f"{field}.offset", f"{o.offset} is negative")
        tp = (o.topic, o.partition)
        out[tp] = max(out.get(tp, 0), o.offset)
    return out


class WatermarkWaiters:
    """Futures resolved once a moving watermark covers what each one needs."""

    def __init__(self) -> None:
        self._waiters: list[tuple[Mapping[TopicPartition, int], asyncio.Future[None]]] = []

    async def wait(
        self, current: Watermark, needed: Mapping[TopicPartition, int], *, timeout_s: float
    ) -> None:
        if current.covers(needed):
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (needed, fut)
        self._waiters.append(entry)
        try:
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that
            # arrives as the future completes, and the cancelled task runs on.
            async with asyncio.timeout(timeout_s):
                await fut
        except TimeoutError:
            raise DeadlineExceeded(f"not at {dict(needed)} within {timeout_s}s") from None
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    def advance(self, current: Watermark) -> None:
        for needed, fut in self._waiters:
            if not fut.done() and current.covers(needed):
                fut.set_result(None)
