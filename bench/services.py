"""repo_svc, command_svc and query_svc as real processes, on free ports, with their own topics."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from myko import catalogue
from myko.local.kafka import LocalKafka
from myko.local.ports import free_port
from myko.local.procs import ServiceProcess, Stack


@dataclass(frozen=True)
class MykoPorts:
    repo: int
    command: int
    query: int
    # Each service's GET /metrics port; empty when metrics are off.
    metrics: tuple[int, ...] = ()


def myko_stack(
    *,
    bootstrap_servers: str,
    topic_prefix: str,
    log_dir: Path,
    partitions: int,
    extra_env: Mapping[str, str] | None = None,
    metrics: bool = True,
) -> tuple[Stack, MykoPorts]:
    """The three services in start order (repo first: query mirrors it); `extra_env` for all three.

    With `metrics` each serves GET /metrics on a free port (the catalogue's fixed
    ones would collide between the bench's stacks); without, none is served.
    """
    metrics_ports = {short: free_port() if metrics else 0 for short in ("repo", "command", "query")}
    ports = MykoPorts(
        repo=free_port(),
        command=free_port(),
        query=free_port(),
        metrics=tuple(p for p in metrics_ports.values() if p),
    )
    common = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
        # The example app: the bench drives its commands and queries.
        "MYKO_APP": "targets",
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

    def service(short: str, port: int) -> ServiceProcess:
        return ServiceProcess(
            name=short,
            module=catalogue.service(short).module,
            # Stable per run: it names command_svc's Kafka transactional id.
            env={
                **common,
                "MYKO_INSTANCE_ID": f"bench-{topic_prefix}{short}",
                "MYKO_METRICS_PORT": str(metrics_ports[short]),
            },
            grpc_port=port,
            log_path=log_dir / f"{short}.log",
        )

    services = [service("repo", ports.repo), service("command", ports.command), service("query", ports.query)]
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
