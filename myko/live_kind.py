"""The two kinds of live request: queries (an array of entities) and reports (one value).

One enum for the whole framework: the query and report services, the typed
client and the gateway all name the kind, its gRPC service and its methods from here.
"""

from __future__ import annotations

import enum


class LiveKind(enum.Enum):
    QUERY = "query"
    REPORT = "report"

    @property
    def service(self) -> str:
        """The gRPC service that serves this kind."""
        return "myko.v1.QueryBus" if self is LiveKind.QUERY else "myko.v1.ReportBus"

    @property
    def watch_method(self) -> str:
        return f"/{self.service}/Watch"

    @property
    def get_method(self) -> str:
        return f"/{self.service}/Get"

    @property
    def request_field(self) -> str:
        """The `google.protobuf.Any` field of QueryRequest / ReportRequest."""
        return self.value
