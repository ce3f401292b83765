"""watermark.fence_of: an `at_least` no reader could reach is refused, naming the field."""

from __future__ import annotations

import pytest

from myko.errors import InvalidArgument
from myko.v1 import item_pb2
from myko.watermark import Watermark, fence_of

TOPICS = ["p.targets.v1.Target", "p.targets.v1.Zone"]
KNOWN = Watermark({("p.targets.v1.Target", 0): 5, ("p.targets.v1.Target", 1): 0, ("p.targets.v1.Zone", 0): 2})


def wm(*positions: tuple[str, int, int]) -> item_pb2.Watermark:
    return item_pb2.Watermark(
        positions=[item_pb2.Offset(topic=t, partition=p, offset=o) for t, p, o in positions]
    )


def test_reachable_positions_are_kept_with_the_highest_offset_per_partition() -> None:
    fence = fence_of(
        wm(("p.targets.v1.Target", 1, 7), ("p.targets.v1.Target", 1, 3), ("p.targets.v1.Zone", 0, 9)),
        topics=TOPICS,
        known=KNOWN,
    )
    assert fence == {("p.targets.v1.Target", 1): 7, ("p.targets.v1.Zone", 0): 9}


@pytest.mark.parametrize(
    ("position", "field"),
    [
        (("no.such.Topic", 0, 1), "at_least.positions[1].topic"),
        (("x" * 10_000, 0, 1), "at_least.positions[1].topic"),
        (("p.targets.v1.Target", -1, 1), "at_least.positions[1].partition"),
        (("p.targets.v1.Target", 2, 1), "at_least.positions[1].partition"),
        (("p.targets.v1.Zone", 0, -1), "at_least.positions[1].offset"),
    ],
)
def test_unreachable_positions_are_invalid_arguments(position: tuple[str, int, int], field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        fence_of(wm(("p.targets.v1.Zone", 0, 1), position), topics=TOPICS, known=KNOWN)
    assert err.value.field == field
    assert len(err.value.message) < 200


def test_before_catching_up_any_partition_of_a_known_topic_may_be_awaited() -> None:
    assert fence_of(wm(("p.targets.v1.Zone", 7, 1)), topics=TOPICS, known=Watermark()) == {
        ("p.targets.v1.Zone", 7): 1
    }
