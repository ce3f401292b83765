"""Which services a local Myko runs, on which ports, with which settings.

`local_stack` is what `myko run` (and `make run`) starts; `cluster_stack` is
`make run-cluster`: two replicas of every service over a 3-node Kafka. Tests
reuse both. The lists are in the catalogue's start order (myko/catalogue.py).

Both take `app`, the module exposing the application's `app: myko.App`
(MYKO_APP), and `extra_env` for any other MYKO_* setting (log level, topic
prefix, UI directory); Kafka, ports, peer addresses and instance ids are the
topology's own. Only the services that use Kafka get Kafka settings
(catalogue: `kafka`). `security` (see `StackSecurity`) gives each service its
own Kafka credentials and certificate: `make run-cluster` runs that way. `port_shift` and `instance_prefix` let a test run a stack beside
`make run`. A shift that would put a gateway on a port browsers refuse is a
ConfigError (myko/local/ports.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from myko import catalogue
from myko.catalogue import ServiceSpec
from myko.errors import ConfigError
from myko.local.ports import check_browser_ports
from myko.local.procs import ServiceProcess
from myko.pki import CertFiles


@dataclass(frozen=True)
class StackSecurity:
    """Per service: its Kafka connection settings (credentials included) and its certificate."""

    # Service name -> KAFKA_* / MYKO_KAFKA_* variables, for the services that use Kafka.
    kafka_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Service name -> its certificate and key, signed by `ca`; empty = no TLS.
    certs: Mapping[str, CertFiles] = field(default_factory=dict)
    ca: Path | None = None

    @property
    def tls(self) -> bool:
        return bool(self.certs)

    def tls_env(self, service: str) -> dict[str, str]:
        if not self.tls:
            return {}
        assert self.ca is not None
        files = self.certs[service]
        return {"MYKO_TLS_CERT": str(files.cert), "MYKO_TLS_KEY": str(files.key), "MYKO_TLS_CA": str(self.ca)}


# Replica n listens on the default port + (n - 1) * REPLICA_PORT_STEP (query-2: 50152).
REPLICA_PORT_STEP = 100


def port_of(name: str, *, replica: int = 1, port_shift: int = 0, internal: bool = False) -> int:
    """A replica's port; `internal`: its internal listener's (services that have one)."""
    spec = catalogue.service(name)
    base = spec.internal_port if internal else spec.port
    if base is None:
        raise ValueError(f"{name} has no internal port")
    return base + port_shift + (replica - 1) * REPLICA_PORT_STEP


def all_ports(*, replicas: int = 1, port_shift: int = 0) -> list[int]:
    """Every port a stack of `replicas` listens on (internal and metrics ones included)."""
    return [
        port
        for spec in catalogue.SERVICES
        for n in range(1, replicas + 1)
        for port in ports_of(spec.name, replica=n, port_shift=port_shift)
    ]


def metrics_port_of(name: str, *, replica: int = 1, port_shift: int = 0) -> int:
    """Where the replica serves GET /metrics (an HTTP service: on its own port)."""
    spec = catalogue.service(name)
    if spec.http:
        return port_of(name, replica=replica, port_shift=port_shift)
    return spec.metrics_port + port_shift + (replica - 1) * REPLICA_PORT_STEP


def ports_of(name: str, *, replica: int = 1, port_shift: int = 0) -> list[int]:
    """Every port the replica listens on: its service, internal and metrics ports."""
    ports = [port_of(name, replica=replica, port_shift=port_shift)]
    if catalogue.service(name).internal_port is not None:
        ports.append(port_of(name, replica=replica, port_shift=port_shift, internal=True))
    metrics = metrics_port_of(name, replica=replica, port_shift=port_shift)
    return ports if metrics in ports else [*ports, metrics]


def check_port_shift(port_shift: int, *, replicas: int = 1) -> None:
    """ConfigError unless every port of the shifted stack is valid and its UI ports browser-safe."""
    ports = all_ports(replicas=replicas, port_shift=port_shift)
    if min(ports) < 1024 or max(ports) > 65535:
        raise ConfigError(f"--port-shift {port_shift} puts ports outside 1024-65535")
    check_browser_ports(
        (
            port_of(spec.name, replica=n, port_shift=port_shift)
            for spec in catalogue.SERVICES
            if spec.http
            for n in range(1, replicas + 1)
        ),
        what=f"--port-shift {port_shift}",
    )


def _replica(
    spec: ServiceSpec,
    *,
    app: str,
    replica: int,
    name: str,
    bootstrap_servers: str,
    log_dir: Path,
    port_shift: int,
    instance_prefix: str,
    extra_env: Mapping[str, str],
    cwd: Path | None,
    security: StackSecurity,
) -> ServiceProcess:
    def addr(peer: ServiceSpec, *, internal: bool = False) -> str:
        return f"127.0.0.1:{port_of(peer.name, replica=replica, port_shift=port_shift, internal=internal)}"

    port = port_of(spec.name, replica=replica, port_shift=port_shift)
    # With TLS, calls between services go to internal listeners (myko/tls.py).
    internal_port = (
        port_of(spec.name, replica=replica, port_shift=port_shift, internal=True)
        if security.tls and spec.internal_port is not None
        else None
    )
    metrics_port = metrics_port_of(spec.name, replica=replica, port_shift=port_shift)
    env = {
        **auth_env(extra_env),
        **extra_env,
        "MYKO_APP": app,
        spec.port_env: str(port),
        # Each replica talks to its own sibling of the same number: replica 2 of
        # query reads repo-2, so losing one repo replica leaves one path whole.
        "MYKO_REPO_ADDR": addr(catalogue.REPO),
        "MYKO_COMMAND_ADDR": addr(catalogue.COMMAND),
        "MYKO_QUERY_ADDR": addr(catalogue.QUERY),
        "MYKO_REPORT_ADDR": addr(catalogue.REPORT),
        # Stable across restarts of this replica (it names Kafka transactional ids).
        "MYKO_INSTANCE_ID": f"{instance_prefix}{name}",
        **security.tls_env(spec.name),
    }
    if spec.kafka:
        env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap_servers
        env.update(security.kafka_env.get(spec.name, {}))
    if spec is catalogue.SAGA and security.tls:
        # Where its certificate identifies it to command_svc.
        env["MYKO_COMMAND_ADDR"] = addr(catalogue.COMMAND, internal=True)
    if not spec.http:
        env["MYKO_METRICS_PORT"] = str(metrics_port)
    if spec is catalogue.COMMAND:
        # Where the other command replicas forward to this one while it leads.
        env["MYKO_ADVERTISE_ADDR"] = f"127.0.0.1:{internal_port or port}"
    if internal_port is not None:
        env[spec.internal_port_env] = str(internal_port)
    return ServiceProcess(
        name=name,
        module=spec.module,
        env=env,
        grpc_port=None if spec.http else port,
        internal_port=internal_port,
        health_url=f"http://127.0.0.1:{port}/healthz" if spec.http else None,
        log_path=log_dir / f"{name}.log",
        cwd=cwd,
        metrics_port=metrics_port,
    )


def auth_env(extra_env: Mapping[str, str]) -> dict[str, str]:
    """Auth off (MYKO_AUTH_DISABLED=true) unless the caller names an issuer: a local stack
    without an identity provider runs open, with the services' warning (docs/security.md)."""
    return {} if extra_env.get("MYKO_OIDC_ISSUER") else {"MYKO_AUTH_DISABLED": "true"}


def local_stack(
    *,
    app: str,
    bootstrap_servers: str,
    log_dir: Path,
    extra_env: Mapping[str, str] | None = None,
    port_shift: int = 0,
    instance_prefix: str = "",
    cwd: Path | None = None,
    security: StackSecurity | None = None,
) -> list[ServiceProcess]:
    """One of each service on the default ports (+ port_shift), named by service name."""
    check_port_shift(port_shift)
    return [
        _replica(
            spec,
            app=app,
            replica=1,
            name=spec.name,
            bootstrap_servers=bootstrap_servers,
            log_dir=log_dir,
            port_shift=port_shift,
            instance_prefix=instance_prefix,
            extra_env=extra_env or {},
            cwd=cwd,
            security=security or StackSecurity(),
        )
        for spec in catalogue.SERVICES
    ]


def cluster_stack(
    *,
    app: str,
    bootstrap_servers: str,
    log_dir: Path,
    extra_env: Mapping[str, str] | None = None,
    port_shift: int = 0,
    instance_prefix: str = "",
    replicas: int = 2,
    cwd: Path | None = None,
    security: StackSecurity | None = None,
) -> list[ServiceProcess]:
    """`replicas` of each service, named `<service>-<n>` (also their MYKO_INSTANCE_ID).

    Topics get replication factor 3 and min.insync.replicas 2, so the Kafka behind
    `bootstrap_servers` needs at least 3 brokers.
    """
    check_port_shift(port_shift, replicas=replicas)
    env = {
        "MYKO_TOPIC_REPLICATION_FACTOR": "3",
        "MYKO_TOPIC_MIN_INSYNC_REPLICAS": "2",
        **(extra_env or {}),
    }
    return [
        _replica(
            spec,
            app=app,
            replica=n,
            name=f"{spec.name}-{n}",
            bootstrap_servers=bootstrap_servers,
            log_dir=log_dir,
            port_shift=port_shift,
            instance_prefix=instance_prefix,
            extra_env=env,
            cwd=cwd,
            security=security or StackSecurity(),
        )
        for spec in catalogue.SERVICES
        for n in range(1, replicas + 1)
    ]
