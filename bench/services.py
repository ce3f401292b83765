"""repo_svc, command_svc and query_svc as real processes, on free ports, with their own topics;
optionally report_svc, saga_svc and the gateway too (`extra_services`)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from myko import catalogue
from myko.local.kafka import LocalKafka
from myko.local.ports import free_port
from myko.local.procs import ServiceProcess, Stack

# Always started, in this order.
_CORE = ("repo", "command", "query")
# The example app (MYKO_APP): the bench drives its commands and queries.
APP = "targets"


@dataclass(frozen=True)
class MykoPorts:
    repo: int
    command: int
    query: int
    # Each service's GET /metrics port; empty when metrics are off.
    metrics: tuple[int, ...] = ()
    # The port of each of `extra_services` (report, saga, gateway), by name.
    extra: Mapping[str, int] = field(default_factory=dict)


def myko_stack(
    *,
    bootstrap_servers: str,
    topic_prefix: str,
    log_dir: Path,
    partitions: int,
    extra_env: Mapping[str, str] | None = None,
    metrics: bool = True,
    extra_services: Sequence[str] = (),
) -> tuple[Stack, MykoPorts]:
    """The three services in start order (repo first: query mirrors it); `extra_env` for all of them.

    With `metrics` each serves GET /metrics on a free port (the catalogue's fixed
    ones would collide between the bench's stacks); without, none is served.
    `extra_services` ("report", "saga", "gateway") follow the three, in the
    catalogue's start order, each on a free port and probed as the local stack
    probes it (the gateway by GET /healthz).
    """
    extras = [spec for spec in catalogue.SERVICES if spec.name in extra_services and spec.name not in _CORE]
    unknown = set(extra_services) - {spec.name for spec in extras}
    if unknown:
        raise ValueError(f"extra_services: {sorted(unknown)} are not among report, saga, gateway")
    # The gateway serves /metrics on its own port (MYKO_GATEWAY_METRICS), the others on their own.
    metrics_ports = {
        spec.name: free_port() if metrics and not spec.http else 0
        for spec in (*map(catalogue.service, _CORE), *extras)
    }
    extra_ports = {spec.name: free_port() for spec in extras}
    ports = MykoPorts(
        repo=free_port(),
        command=free_port(),
        query=free_port(),
        metrics=tuple(p for p in metrics_ports.values() if p)
        + tuple(extra_ports[s.name] for s in extras if metrics and s.http),
        extra=extra_ports,
    )
    common = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
        "MYKO_APP": APP,
        "MYKO_TOPIC_PREFIX": topic_prefix,
        "MYKO_TOPIC_PARTITIONS": str(partitions),
        "MYKO_REPO_PORT": str(ports.repo),
        "MYKO_COMMAND_PORT": str(ports.command),
        "MYKO_QUERY_PORT": str(ports.query),
        "MYKO_REPO_ADDR": f"127.0.0.1:{ports.repo}",
        "MYKO_LOG_LEVEL": "WARNING",
        # The scale section's AllTargets over 100k Targets is ~23 MB, over the 8 MiB default.
        "MYKO_MAX_MESSAGE_BYTES": str(64 * 1024 * 1024),
        **(extra_env or {}),
        "MYKO_AUTH_DISABLED": "true",
    }
    if extras:
        # What the extra services call (saga_svc and the gateway: command_svc; the gateway: the buses).
        common.update(
            {
                "MYKO_COMMAND_ADDR": f"127.0.0.1:{ports.command}",
                "MYKO_QUERY_ADDR": f"127.0.0.1:{ports.query}",
                **{spec.port_env: str(extra_ports[spec.name]) for spec in extras},
            }
        )
        if "report" in extra_ports:
            common["MYKO_REPORT_ADDR"] = f"127.0.0.1:{extra_ports['report']}"
        if "gateway" in extra_ports and not metrics:
            common["MYKO_GATEWAY_METRICS"] = "0"

    def service(short: str, port: int) -> ServiceProcess:
        http = catalogue.service(short).http
        return ServiceProcess(
            name=short,
            module=catalogue.service(short).module,
            # Stable per run: it names command_svc's Kafka transactional id.
            env={
                **common,
                "MYKO_INSTANCE_ID": f"bench-{topic_prefix}{short}",
                **({} if http else {"MYKO_METRICS_PORT": str(metrics_ports[short])}),
            },
            grpc_port=None if http else port,
            health_url=f"http://127.0.0.1:{port}/healthz" if http else None,
            log_path=log_dir / f"{short}.log",
        )

    services = [service("repo", ports.repo), service("command", ports.command), service("query", ports.query)]
    services += [service(spec.name, extra_ports[spec.name]) for spec in extras]
    return Stack(services, healthy_timeout_s=90.0), ports


@contextlib.contextmanager
def kafka_bootstrap() -> Iterator[str]:
    """The broker at KAFKA_BOOTSTRAP_SERVERS, or a fresh one from the project's jars for the run."""
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        yield existing
        return
    with tempfile.TemporaryDirectory() as d, LocalKafka(data_dir=Path(d)) as kafka:
        yield kafka.bootstrap_servers
