"""Field checks shared by the example's command handlers."""

from __future__ import annotations

import math

from myko import InvalidArgument
from targets.v1 import entities_pb2

MAX_NAME = 200
MAX_ID = 128
STATUSES = {
    v.number
    for v in entities_pb2.TargetStatus.DESCRIPTOR.values
    if v.number != entities_pb2.TARGET_STATUS_UNSPECIFIED
}


def name(value: str, field: str = "name") -> str:
    value = value.strip()
    if not value:
        raise InvalidArgument(field, "must not be empty")
    if len(value) > MAX_NAME:
        raise InvalidArgument(field, f"is {len(value)} characters; at most {MAX_NAME}")
    return value


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
    """An id as a parameter: no blanks or control characters, at most MAX_ID characters."""
    if not value:
        raise InvalidArgument(field, "must not be empty")
    if len(value) > MAX_ID:
        raise InvalidArgument(field, f"is {len(value)} characters; at most {MAX_ID}")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise InvalidArgument(field, f"{value[:64]!r} contains blanks or control characters")
    return value
