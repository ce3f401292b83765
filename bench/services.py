"""repo_svc, command_svc and query_svc as real processes, on free ports, with their own topics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from myko import catalogue
from myko.local.ports import free_port
from myko.local.procs import ServiceProcess, Stack


@dataclass(frozen=True)
class MykoPorts:
    repo: int
    command: int
    query: int


def myko_stack(
    *,
    bootstrap_servers: str,
    topic_prefix: str,
    log_dir: Path,
    partitions: int,
    extra_env: Mapping[str, str] | None = None,
) -> tuple[Stack, MykoPorts]:
    """The three services in start order (repo first: query mirrors it); `extra_env` for all three."""
    ports = MykoPorts(repo=free_port(), command=free_port(), query=free_port())
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
        **(extra_env or {}),
    }

    def service(short: str, port: int) -> ServiceProcess:
        return ServiceProcess(
            name=short,
            module=catalogue.service(short).module,
            # Stable per run: it names command_svc's Kafka transactional id.
            env={**common, "MYKO_INSTANCE_ID": f"bench-{topic_prefix}{short}"},
            grpc_port=port,
            log_path=log_dir / f"{short}.log",
        )

    services = [service("repo", ports.repo), service("command", ports.command), service("query", ports.query)]
    return Stack(services, healthy_timeout_s=90.0), ports
