"""Field checks shared by the example's commands, queries and reports.

Ids and texts follow the framework's one set of input rules (myko.input_rules),
so an id SetTarget accepts is one TargetsInZone and ZoneTotals accept too.
"""

from __future__ import annotations

import math

from myko import InvalidArgument, input_rules
from targets.v1 import entities_pb2

MAX_NAME = 200
MAX_DESCRIPTION = 2000
MAX_TAG = 64
MAX_TAGS = 32
STATUSES = {
    v.number
    for v in entities_pb2.TargetStatus.DESCRIPTOR.values
    if v.number != entities_pb2.TARGET_STATUS_UNSPECIFIED
}


def name(value: str, field: str = "name") -> str:
    return input_rules.text(value, field, max_chars=MAX_NAME)


def description(value: str, field: str = "description") -> str:
    return input_rules.text(value, field, max_chars=MAX_DESCRIPTION, multiline=True, required=False)


def tags(values: list[str], field: str = "tags") -> list[str]:
    """Trimmed, blank ones dropped, sorted and unique; at most MAX_TAGS."""
    if len(values) > MAX_TAGS:
        raise InvalidArgument(field, f"has {len(values)} entries; at most {MAX_TAGS}")
    out = {
        input_rules.text(t, f"{field}[{i}]", max_chars=MAX_TAG, required=False) for i, t in enumerate(values)
    }
    return sorted(out - {""})


def status(value: int, field: str = "status", *, default: int | None = None) -> int:
    if value == entities_pb2.TARGET_STATUS_UNSPECIFIED and default is not None:
        return default
    if value not in STATUSES:
        raise InvalidArgument(field, f"{value} is not a TargetStatus")
    return value


def finite(value: float, field: str) -> float:
    if not math.isfinite(value):
        raise InvalidArgument(field, "must be a finite number")
    return value


def entity_id(value: str, field: str = "id") -> str:
    """An id as a parameter or reference: the framework's id rule."""
    return input_rules.entity_id(value, field)
