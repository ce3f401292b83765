"""The service catalogue: every Myko service, its default port, how it is run and probed.

The one place these facts are written. Settings take their default ports from
here, each service registers the gRPC names listed here, the local stack
(`myko run`, `make run`, the tests) starts services in this order from these
modules, and the container entrypoint and health probe (devtools/) and the
Swarm drift test (tests/test_stack.py) read it too.
"""

from __future__ import annotations

from dataclasses import dataclass

from myko.errors import ConfigError
from myko.live_kind import LiveKind

# The variable the container image reads to choose its service (devtools/entrypoint.py).
SERVICE_ENV = "MYKO_SERVICE"
# Base name of the sagas' consumer groups: one group per saga, `<prefix><base>.<saga>`.
SAGA_GROUP_ID = "myko-saga"


@dataclass(frozen=True, kw_only=True)
class ServiceSpec:
    """One kind of service."""

    # Its name everywhere: MYKO_SERVICE, MYKO_<NAME>_PORT, `myko serve <name>`, log files.
    name: str
    port: int
    # Where Prometheus scrapes GET /metrics (MYKO_METRICS_PORT overrides it); an HTTP
    # service serves /metrics on its own port, so for it this is `port`.
    metrics_port: int
    # `python -m <module>` runs it; part of the myko wheel.
    module: str
    # This repository's thin runner (`python -m command_svc`), which calls the same code.
    runner: str
    # gRPC services its server registers besides health and reflection; these and ""
    # are the names its health service reports on.
    grpc_services: tuple[str, ...] = ()
    # The gateway speaks HTTP: probed with GET /healthz rather than gRPC health.
    http: bool = False
    # With TLS on (docs/security.md, "Transport"): its main port serves other
    # Myko services only and takes callers with a client certificate alone.
    internal: bool = False
    # With TLS on: a second listener for other Myko services (client certificates
    # required) beside the public port, which callers with tokens use.
    internal_port: int | None = None
    # The service identities (certificate common names) its internal listener accepts.
    callers: tuple[str, ...] = ()
    # It reads or writes Kafka, as its own principal (User:<name>, docs/security.md);
    # the others get no Kafka settings at all.
    kafka: bool = False

    @property
    def port_env(self) -> str:
        """The variable that overrides its port."""
        return f"MYKO_{self.name.upper()}_PORT"

    @property
    def internal_port_env(self) -> str:
        """The variable that overrides its internal port."""
        return f"MYKO_{self.name.upper()}_INTERNAL_PORT"

    @property
    def default_addr(self) -> str:
        """Where a peer on the same host reaches it by default."""
        return f"127.0.0.1:{self.port}"


# command_svc's internal listener (TLS only): forwarded commands and saga_svc's.
COMMAND_INTERNAL_PORT = 50056

REPO = ServiceSpec(
    name="repo",
    port=50054,
    metrics_port=9454,
    module="myko.services.repo",
    runner="repo_svc",
    grpc_services=("myko.v1.RepoService",),
    internal=True,
    callers=("query", "report"),
    kafka=True,
)
COMMAND = ServiceSpec(
    name="command",
    port=50051,
    metrics_port=9451,
    module="myko.services.command",
    runner="command_svc",
    grpc_services=("myko.v1.CommandBus",),
    internal_port=COMMAND_INTERNAL_PORT,
    # Followers forwarding to the leader, and the sagas.
    callers=("command", "saga"),
    kafka=True,
)
# Many subscriptions over one stream (proto/myko/v1/live.proto): query_svc and report_svc
# serve it for internal callers, the gateway for browsers.
LIVE_BUS = "myko.v1.LiveBus"
QUERY = ServiceSpec(
    name="query",
    port=50052,
    metrics_port=9452,
    module="myko.services.query",
    runner="query_svc",
    grpc_services=(LiveKind.QUERY.service, LIVE_BUS),
)
REPORT = ServiceSpec(
    name="report",
    port=50053,
    metrics_port=9453,
    module="myko.services.report",
    runner="report_svc",
    grpc_services=(LiveKind.REPORT.service, LIVE_BUS),
)
# Health only: saga_svc serves no API of its own.
SAGA = ServiceSpec(
    name="saga", port=50055, metrics_port=9455, module="myko.services.saga", runner="saga_svc", kafka=True
)
GATEWAY = ServiceSpec(
    name="gateway", port=8080, metrics_port=8080, module="myko.services.gateway", runner="gateway", http=True
)

# Start order: repo first (query and report mirror it), the gateway last (it
# forwards to the buses). Stopped in reverse.
SERVICES: tuple[ServiceSpec, ...] = (REPO, COMMAND, QUERY, REPORT, SAGA, GATEWAY)


def service(name: str) -> ServiceSpec:
    """The service called `name`; ConfigError naming the choices otherwise."""
    for spec in SERVICES:
        if spec.name == name:
            return spec
    choices = ", ".join(s.name for s in SERVICES)
    raise ConfigError(f"unknown service {name!r}; choose one of {choices}")
