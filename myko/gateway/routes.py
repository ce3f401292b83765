"""Which gRPC methods the gateway exposes, and to which upstream each goes.

An allow-list, not a pattern: RepoService and anything not named here answer
UNIMPLEMENTED, so an internal service cannot be reached by adding a path.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class CallKind(enum.Enum):
    UNARY = "unary"
    SERVER_STREAM = "server_stream"


class Upstream(enum.Enum):
    COMMAND = "command"
    QUERY = "query"
    REPORT = "report"


@dataclass(frozen=True, slots=True)
class Route:
    upstream: Upstream
    kind: CallKind


PUBLIC_ROUTES: dict[str, Route] = {
    "/myko.v1.CommandBus/Execute": Route(Upstream.COMMAND, CallKind.UNARY),
    "/myko.v1.CommandBus/ExecuteBatch": Route(Upstream.COMMAND, CallKind.UNARY),
    "/myko.v1.QueryBus/Watch": Route(Upstream.QUERY, CallKind.SERVER_STREAM),
    "/myko.v1.QueryBus/Get": Route(Upstream.QUERY, CallKind.UNARY),
    "/myko.v1.ReportBus/Watch": Route(Upstream.REPORT, CallKind.SERVER_STREAM),
    "/myko.v1.ReportBus/Get": Route(Upstream.REPORT, CallKind.UNARY),
}

# Served by the gateway itself (gateway/live_bus.py).
LIVE_OPEN = "/myko.v1.LiveBus/Open"
