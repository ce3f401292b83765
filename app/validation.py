"""Field checks shared by the example's command handlers."""

from __future__ import annotations

import math

from gen.app.v1 import entities_pb2
from myko import InvalidArgument

MAX_NAME = 200
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
