"""Myko: an event-sourced application framework over Kafka and gRPC.

Application authors import what they declare handlers with from here.
"""

from myko.app import App
from myko.command_context import CommandContext
from myko.errors import (
    Conflict,
    InvalidArgument,
    MykoError,
    Rejected,
    Unavailable,
    UnknownType,
)
from myko.repo import Repo, Store
from myko.saga_event import SagaEvent

__all__ = [
    "App",
    "CommandContext",
    "Conflict",
    "InvalidArgument",
    "MykoError",
    "Rejected",
    "Repo",
    "SagaEvent",
    "Store",
    "Unavailable",
    "UnknownType",
]
