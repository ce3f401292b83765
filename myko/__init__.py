"""Myko: an event-sourced application framework over Kafka and gRPC.

Application authors import what they declare handlers with from here.
"""

from myko.app import App, Handlers
from myko.client import Client
from myko.command_context import CommandContext
from myko.derive import derive
from myko.errors import (
    Conflict,
    DeadlineExceeded,
    InvalidArgument,
    MykoError,
    PermissionDenied,
    Rejected,
    ResourceExhausted,
    ServerError,
    Unauthenticated,
    Unavailable,
    UnknownType,
)
from myko.policy import Policy, Scope, by_subject, by_tenant, roles, scopes, services
from myko.principal import Principal, PrincipalKind
from myko.query_window import Window
from myko.repo import Repo, Store
from myko.saga_event import SagaEvent

__all__ = [
    "App",
    "Client",
    "CommandContext",
    "Conflict",
    "DeadlineExceeded",
    "Handlers",
    "InvalidArgument",
    "MykoError",
    "PermissionDenied",
    "Policy",
    "Principal",
    "PrincipalKind",
    "Rejected",
    "Repo",
    "ResourceExhausted",
    "SagaEvent",
    "Scope",
    "ServerError",
    "Store",
    "Unauthenticated",
    "Unavailable",
    "UnknownType",
    "Window",
    "by_subject",
    "by_tenant",
    "derive",
    "roles",
    "scopes",
    "services",
]
