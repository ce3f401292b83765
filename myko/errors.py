"""The one error hierarchy of Myko.

Every error a handler, the library or a service raises on purpose is a
`MykoError`. `status.py` maps each class to a gRPC status code, in one place.
`retriable` tells a caller whether the same request may succeed later unchanged.

Clients (myko/client.py) raise the same classes for the status a server
answered with (`status.error_of`), so a caller handles a remote rejection and
a local one alike.
"""

from __future__ import annotations

import uuid
from enum import StrEnum


class MykoError(Exception):
    retriable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(MykoError):
    """A setting read from the environment is missing or malformed."""


class CodegenError(ConfigError):
    """Code generation cannot go on: the .proto files declare something impossible, or a tool failed."""


class InvalidArgument(MykoError):
    """The request is malformed; `field` names the offending field ("" when unknown)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class UnknownType(MykoError):
    """No handler is registered for this command, query or report type.

    Raised by a client for the status a server answered with, only the message is
    known: `kind` and `type_name` are then empty."""

    def __init__(self, kind: str, type_name: str, *, message: str = "") -> None:
        super().__init__(message or f"unknown {kind} type {echo(type_name)}")
        self.kind = kind
        self.type_name = type_name


class Rejected(MykoError):
    """A handler refused the request given the current state (a business rule)."""


class Conflict(MykoError):
    """Concurrent writes kept colliding; retrying with the same tx is safe."""

    retriable = True


class PermissionDenied(MykoError):
    """The caller is known but not allowed to do this."""


class Unauthenticated(MykoError):
    """The caller presented no credentials, or ones that are not valid."""


class ResourceExhausted(MykoError):
    """A shared capacity is used up (a server overloaded, too many streams open); later
    may work. A request over a fixed limit is the LimitExceeded kind of it."""

    retriable = True


class LimitExceeded(ResourceExhausted):
    """The request is over a fixed limit, so the same request fails again: not retriable.

    `limit` names the setting (e.g. MYKO_MAX_RESULT_BYTES), and so does the message.
    status.py sends it as RESOURCE_EXHAUSTED with trailing metadata `myko-limit`,
    which tells it apart from an overloaded server, and clients raise it again.
    """

    retriable = False

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


class ServerError(MykoError):
    """A server failed for a reason of its own (INTERNAL, UNKNOWN, DATA_LOSS): a bug there."""


class InternalError(ServerError):
    """Raised by a server for its own fault. The caller sees only a reference;
    the details are logged under it."""

    def __init__(self, ref: str | None = None) -> None:
        self.ref = ref or uuid.uuid4().hex[:12]
        super().__init__(f"internal error (ref {self.ref})")


class Unavailable(MykoError):
    """A dependency (the broker, an upstream service) cannot be reached now."""

    retriable = True


class Fenced(Unavailable):
    """Another process took over this writer's Kafka transactional id: this one must stop
    writing. Its callers may retry with the same tx (the new leader answers)."""


class DeadlineExceeded(MykoError):
    """The work did not finish within the caller's deadline."""

    retriable = True


class FramingError(InvalidArgument):
    """A grpc-web request body that is not one well-formed message frame."""

    def __init__(self, message: str) -> None:
        super().__init__("request body", message)


class MetadataError(InvalidArgument):
    """A request header that cannot become gRPC metadata (grpc-timeout, -bin, non-ASCII)."""

    def __init__(self, header: str, message: str) -> None:
        super().__init__(f"header {header}", message)


# Client-supplied text quoted in an error message is cut to this many characters,
# so a request cannot make the answer (or a log line) as large as itself.
MAX_ECHO_CHARS = 80


def echo(value: str, limit: int = MAX_ECHO_CHARS) -> str:
    """`value` quoted for an error message, shortened to `limit` characters."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


class Defect(StrEnum):
    """What is wrong with a record that cannot be decoded (the quarantine counts by it)."""

    NO_KEY = "no-key"
    BAD_KEY = "bad-key"
    BAD_HEADER = "bad-header"
    BAD_TIMESTAMP = "bad-timestamp"
    WRONG_TYPE = "wrong-type"
    NO_VALUE = "no-value"
    BAD_VALUE = "bad-value"
    # Decoding failed in a way no check above anticipated: a bug, but still one record only.
    UNDECODABLE = "undecodable"


class BadRecord(MykoError):
    """A record on a Myko topic that cannot be decoded.

    Never reaches a caller: the record is quarantined (myko/quarantine.py) and
    the records around it apply normally.
    """

    def __init__(self, defect: Defect, message: str) -> None:
        super().__init__(message)
        self.defect = defect


class TopicRewritten(Unavailable):
    """A topic this service reads was deleted, recreated, truncated or repartitioned.

    The service stops serving rather than mix two histories; a restart rebuilds
    its state from the topic as it is now (docs/quarantine.md).
    """
