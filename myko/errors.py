"""The one error hierarchy of Myko.

Every error a handler, the library or a service raises on purpose is a
`MykoError`. `status.py` maps each class to a gRPC status code, in one place.
`retriable` tells a caller whether the same request may succeed later unchanged.
"""

from __future__ import annotations


class MykoError(Exception):
    retriable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(MykoError):
    """A setting read from the environment is missing or malformed."""


class InvalidArgument(MykoError):
    """The request is malformed; `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class UnknownType(MykoError):
    """No handler is registered for this command, query or report type."""

    def __init__(self, kind: str, type_name: str) -> None:
        super().__init__(f"unknown {kind} type {type_name!r}")
        self.kind = kind
        self.type_name = type_name


class Rejected(MykoError):
    """A handler refused the request given the current state (a business rule)."""


class Conflict(MykoError):
    """Concurrent writes kept colliding; retrying with the same tx is safe."""

    retriable = True


class Unavailable(MykoError):
    """A dependency (the broker, an upstream service) cannot be reached now."""

    retriable = True


class DeadlineExceeded(MykoError):
    """The work did not finish within the caller's deadline."""

    retriable = True
