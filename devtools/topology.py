"""Which services a local Myko runs, on which ports, with which settings.

`local_stack` is what `make run` starts; `cluster_stack` is `make run-cluster`:
two replicas of every service over a 3-node Kafka. Tests reuse both; the lists
are in start order (repo first: query and report read from it; gateway last).

Both take `extra_env` for any other MYKO_* setting (log level, topic prefix, app
module); Kafka, ports, peer addresses and instance ids are the topology's own.
`port_shift` and `instance_prefix` let a test run a stack beside `make run`.

Services whose package is not there yet (`<module>/__main__.py`) are left out,
so the tools work while the mesh is being built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from devtools.procs import ROOT, ServiceProcess
from myko.settings import DEFAULT_PORTS

# Replica n listens on the default port + (n - 1) * REPLICA_PORT_STEP (query-2: 50152).
REPLICA_PORT_STEP = 100
SAGA_GROUP_ID = "myko-saga"
# What `make run` serves unless MYKO_APP says otherwise: the example application.
EXAMPLE_APP = "targets"


@dataclass(frozen=True, kw_only=True)
class ServiceKind:
    short: str  # key in DEFAULT_PORTS and in MYKO_<SHORT>_PORT
    module: str
    http: bool = False  # gateway: HTTP /healthz rather than gRPC health


# Start order.
SERVICES = (
    ServiceKind(short="repo", module="repo_svc"),
    ServiceKind(short="command", module="command_svc"),
    ServiceKind(short="query", module="query_svc"),
    ServiceKind(short="report", module="report_svc"),
    ServiceKind(short="saga", module="saga_svc"),
    ServiceKind(short="gateway", module="gateway", http=True),
)


def present(kind: ServiceKind, *, root: Path = ROOT) -> bool:
    return (root / kind.module / "__main__.py").exists()


def port_of(short: str, *, replica: int = 1, port_shift: int = 0) -> int:
    return DEFAULT_PORTS[short] + port_shift + (replica - 1) * REPLICA_PORT_STEP


def _replica(
    kind: ServiceKind,
    *,
    replica: int,
    name: str,
    bootstrap_servers: str,
    log_dir: Path,
    port_shift: int,
    instance_prefix: str,
    extra_env: Mapping[str, str],
) -> ServiceProcess:
    def addr(short: str) -> str:
        return f"127.0.0.1:{port_of(short, replica=replica, port_shift=port_shift)}"

    port = port_of(kind.short, replica=replica, port_shift=port_shift)
    env = {
        **extra_env,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
        f"MYKO_{kind.short.upper()}_PORT": str(port),
        # Each replica talks to its own sibling of the same number: replica 2 of
        # query reads repo-2, so losing one repo replica leaves one path whole.
        "MYKO_REPO_ADDR": addr("repo"),
        "MYKO_COMMAND_ADDR": addr("command"),
        "MYKO_QUERY_ADDR": addr("query"),
        "MYKO_REPORT_ADDR": addr("report"),
        "MYKO_APP": extra_env.get("MYKO_APP", EXAMPLE_APP),
        # All saga replicas share one consumer group: each event is handled once.
        "MYKO_SAGA_GROUP_ID": extra_env.get("MYKO_SAGA_GROUP_ID", SAGA_GROUP_ID),
        # Stable across restarts of this replica (it names Kafka transactional ids).
        "MYKO_INSTANCE_ID": f"{instance_prefix}{name}",
    }
    if kind.short == "command":
        # Where the other command replicas forward to this one while it leads.
        env["MYKO_ADVERTISE_ADDR"] = f"127.0.0.1:{port}"
    return ServiceProcess(
        name=name,
        module=kind.module,
        env=env,
        grpc_port=None if kind.http else port,
        health_url=f"http://127.0.0.1:{port}/healthz" if kind.http else None,
        log_path=log_dir / f"{name}.log",
    )


def local_stack(
    *,
    bootstrap_servers: str,
    log_dir: Path,
    extra_env: Mapping[str, str] | None = None,
    port_shift: int = 0,
    instance_prefix: str = "",
    root: Path = ROOT,
) -> list[ServiceProcess]:
    """One of each service on the default ports (+ port_shift), named by short name."""
    return [
        _replica(
            kind,
            replica=1,
            name=kind.short,
            bootstrap_servers=bootstrap_servers,
            log_dir=log_dir,
            port_shift=port_shift,
            instance_prefix=instance_prefix,
            extra_env=extra_env or {},
        )
        for kind in SERVICES
        if present(kind, root=root)
    ]


def cluster_stack(
    *,
    bootstrap_servers: str,
    log_dir: Path,
    extra_env: Mapping[str, str] | None = None,
    port_shift: int = 0,
    instance_prefix: str = "",
    replicas: int = 2,
    root: Path = ROOT,
) -> list[ServiceProcess]:
    """`replicas` of each service, named `<short>-<n>` (also their MYKO_INSTANCE_ID).

    Topics get replication factor 3 and min.insync.replicas 2, so the Kafka behind
    `bootstrap_servers` needs at least 3 brokers.
    """
    env = {
        "MYKO_TOPIC_REPLICATION_FACTOR": "3",
        "MYKO_TOPIC_MIN_INSYNC_REPLICAS": "2",
        **(extra_env or {}),
    }
    return [
        _replica(
            kind,
            replica=n,
            name=f"{kind.short}-{n}",
            bootstrap_servers=bootstrap_servers,
            log_dir=log_dir,
            port_shift=port_shift,
            instance_prefix=instance_prefix,
            extra_env=env,
        )
        for kind in SERVICES
        if present(kind, root=root)
        for n in range(1, replicas + 1)
    ]
