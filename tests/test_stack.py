"""The Swarm stack is valid, and it agrees with the code so the two cannot drift.

The stack is read as `docker stack config` prints it (anchors merged, variables
interpolated): what is checked is what Swarm would deploy. Environment names are
checked by handing the stack's environment to each service's real
`Settings.from_env` through a mapping that records every name looked up, so a
variable the code no longer reads (or spells differently) fails here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from recording_env import RecordingEnv

from devtools import entrypoint, healthcheck, swarm_profile
from myko import catalogue
from myko.settings import (
    PATH_SETTINGS,
    CommandSettings,
    GatewaySettings,
    QuerySettings,
    ReportSettings,
    RepoSettings,
    SagaSettings,
)

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "swarm" / "docker-stack.yml"
KAFKA_POM = ROOT / "kafka" / "pom.xml"

BROKERS = ("kafka-1", "kafka-2", "kafka-3")
MYKO_SERVICES = tuple(spec.name for spec in catalogue.SERVICES)
DEFAULT_PORTS = {spec.name: spec.port for spec in catalogue.SERVICES}
SETTINGS: dict[str, Callable[[Mapping[str, str]], Any]] = {
    "command": CommandSettings.from_env,
    "repo": RepoSettings.from_env,
    "query": QuerySettings.from_env,
    "report": ReportSettings.from_env,
    "saga": SagaSettings.from_env,
    "gateway": GatewaySettings.from_env,
}
REPLICATED = ("query", "report", "gateway")
# Variables of ours: the settings' namespaces.
OWN_PREFIXES = ("MYKO_", "KAFKA_")
KAFKA_CLIENT_PORT = 9092
KAFKA_CONTROLLER_PORT = 9093
MIN_KAFKA_STOP_GRACE_S = 60
# Filled in by the deploying shell (devtools/swarm.py sets them for `make swarm-up`).
STACK_VARIABLES = (
    "MYKO_IMAGE",
    "MYKO_KAFKA_IMAGE",
    "MYKO_GATEWAY_PUBLISHED_PORT",
    "MYKO_PROMETHEUS_IMAGE",
    "MYKO_GRAFANA_IMAGE",
    "MYKO_PROMETHEUS_PUBLISHED_PORT",
    "MYKO_GRAFANA_PUBLISHED_PORT",
    "MYKO_IDP_IMAGE",
    "MYKO_IDP_PUBLISHED_PORT",
    "MYKO_IDP_UI_ORIGINS",
    "MYKO_OIDC_AUDIENCE",
    "MYKO_OIDC_ALLOW_HTTP",
    "MYKO_SAGA_CLIENT_ID",
)
# Required, without a default: the issuer is the deployment's own (devtools/swarm.py sets it).
ISSUER = "https://idp.example.com:8443"
REQUIRED_VARIABLES = {"MYKO_OIDC_ISSUER": ISSUER}
# The public services check tokens; the saga fetches its own.
AUTHENTICATED = ("command", "query", "report", "saga", "gateway")
# The operators' UIs (docs/observability.md), published beside the gateway.
OBSERVABILITY_PORTS = {"prometheus": 9090, "grafana": 3000}
IDP_PORT = 8443


def _docker_stack_config(
    required: Mapping[str, str] = REQUIRED_VARIABLES,
) -> subprocess.CompletedProcess[str]:
    docker = shutil.which("docker")
    assert docker is not None
    # The defaults written in the file, not whatever this shell exports.
    env = {k: v for k, v in os.environ.items() if k not in (*STACK_VARIABLES, *REQUIRED_VARIABLES)}
    env.update(required)
    return subprocess.run(
        [docker, "stack", "config", "-c", str(STACK)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
        check=False,
    )


@pytest.mark.skipif(shutil.which("docker") is None, reason="the docker client is not installed")
def test_docker_accepts_the_stack() -> None:
    result = _docker_stack_config()
    assert result.returncode == 0, f"docker stack config rejected {STACK}:\n{result.stderr}"


@pytest.mark.skipif(shutil.which("docker") is None, reason="the docker client is not installed")
def test_the_stack_will_not_deploy_without_an_issuer() -> None:
    result = _docker_stack_config(required={})
    assert result.returncode != 0
    assert "MYKO_OIDC_ISSUER" in result.stderr


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    if shutil.which("docker") is None:
        # Without the client, check the file as written (anchors still merge).
        loaded = yaml.safe_load(STACK.read_text())
    else:
        result = _docker_stack_config()
        assert result.returncode == 0, result.stderr
        loaded = yaml.safe_load(result.stdout)
    assert isinstance(loaded, dict)
    return loaded


def _service(stack: dict[str, Any], name: str) -> dict[str, Any]:
    service = stack["services"][name]
    assert isinstance(service, dict)
    return service


def _raw_env(stack: dict[str, Any], name: str) -> dict[str, str]:
    return {k: str(v) for k, v in (_service(stack, name).get("environment") or {}).items()}


def _local_file_of(stack: dict[str, Any], name: str, container_path: str) -> Path | str:
    """The file in this repository that Swarm mounts at `container_path` in `name`.

    An external secret has none: then `<its name>`, standing for its value.
    """
    service = _service(stack, name)
    for kind in ("configs", "secrets"):
        for ref in service.get(kind) or []:
            if ref.get("target") == container_path or f"/run/secrets/{ref.get('target')}" == container_path:
                source = stack[kind][ref["source"]]
                if kind == "secrets" and source.get("external"):
                    return f"<{ref['source']}>"
                assert "file" in source, f"{kind}.{ref['source']} has no file to check"
                path = Path(source["file"])
                return path if path.is_absolute() else STACK.parent / path
    raise AssertionError(f"{name}: nothing is mounted at {container_path}")


def _effective_env(stack: dict[str, Any], name: str) -> dict[str, str]:
    """The environment the service sees after devtools.entrypoint resolved *_FILE."""
    env = _raw_env(stack, name)
    local: dict[str, str] = {}
    for k, v in env.items():
        if not (k.endswith("_FILE") and k.startswith(OWN_PREFIXES)) or k in PATH_SETTINGS:
            local[k] = v
        elif isinstance(found := _local_file_of(stack, name, v), Path):
            local[k] = str(found)
        else:
            local[k.removesuffix("_FILE")] = found  # an external secret's value
    return entrypoint.resolve_file_vars(local)


def _settings(stack: dict[str, Any], name: str) -> tuple[Any, set[str]]:
    recorder = RecordingEnv(_effective_env(stack, name))
    settings = SETTINGS[name](recorder)
    return settings, recorder.read


def _duration_s(value: str | int) -> float:
    """Seconds in a Go duration as docker prints it ("1m0s", "90s")."""
    if isinstance(value, int):
        return value / 1e9  # compose allows raw nanoseconds
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value)
    assert parts, f"not a duration: {value!r}"
    return sum(float(n) * units[u] for n, u in parts)


def _volume_mount(volume: str | dict[str, str]) -> tuple[str, str]:
    """(source, target) of a mount, in short ("src:/dst") or long syntax."""
    if isinstance(volume, str):
        source, target = volume.split(":")[:2]
        return source, target
    return volume["source"], volume["target"]


def _host_port(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port)


def test_the_stack_runs_kafka_and_every_myko_service(stack: dict[str, Any]) -> None:
    assert set(stack["services"]) >= {*BROKERS, *MYKO_SERVICES}


def test_every_catalogued_service_has_settings_and_an_entrypoint_module() -> None:
    assert set(SETTINGS) == set(MYKO_SERVICES)
    for name in MYKO_SERVICES:
        assert entrypoint.service_module(name) == catalogue.service(name).module


def test_only_the_gateway_the_identity_provider_and_the_operators_uis_publish_ports(
    stack: dict[str, Any],
) -> None:
    published = {name: svc.get("ports") for name, svc in stack["services"].items() if svc.get("ports")}
    assert set(published) == {"gateway", "idp", *OBSERVABILITY_PORTS}
    [idp] = published["idp"]
    assert int(idp["target"]) == int(idp["published"]) == IDP_PORT
    for name, port in OBSERVABILITY_PORTS.items():
        [spec] = published[name]
        assert int(spec["target"]) == int(spec["published"]) == port
    gateway, _ = _settings(stack, "gateway")
    [port] = published["gateway"]
    assert int(port["target"]) == gateway.port == DEFAULT_PORTS["gateway"]
    assert int(port["published"]) == DEFAULT_PORTS["gateway"]


@pytest.mark.parametrize("name", MYKO_SERVICES)
def test_every_variable_the_stack_sets_is_read_by_the_code(stack: dict[str, Any], name: str) -> None:
    env = _effective_env(stack, name)
    _, read = _settings(stack, name)
    ours = {k for k in env if k.startswith(OWN_PREFIXES)}
    # *_FILE is consumed by the entrypoint, MYKO_SERVICE by the entrypoint and the probe.
    unread = {k for k in ours - read if not k.endswith("_FILE")} - {catalogue.SERVICE_ENV}
    assert not unread, f"{name} sets variables no code reads: {sorted(unread)}"
    assert env[catalogue.SERVICE_ENV] == name


@pytest.mark.parametrize("name", MYKO_SERVICES)
def test_every_service_listens_on_all_interfaces_at_its_default_port(
    stack: dict[str, Any], name: str
) -> None:
    settings, _ = _settings(stack, name)
    assert settings.host == "0.0.0.0"
    assert settings.port == DEFAULT_PORTS[name]


@pytest.mark.parametrize("name", MYKO_SERVICES)
def test_addresses_point_at_stack_services_and_their_ports(stack: dict[str, Any], name: str) -> None:
    settings, _ = _settings(stack, name)
    # Upstream addresses only: advertise_addr is this replica's own, derived at run time.
    addrs = {
        field: getattr(settings, field)
        for field in vars(settings)
        if field.endswith("_addr") and field != "advertise_addr"
    }
    if name == "command":
        assert settings.advertise_addr == "", "each replica advertises its own container address"
    for field, addr in addrs.items():
        host, port = _host_port(addr)
        assert host in stack["services"], f"{name}.{field}={addr}: no such service"
        target, _ = _settings(stack, host)
        assert port == target.port == DEFAULT_PORTS[host], f"{name}.{field}={addr}"
    if hasattr(settings, "kafka"):
        servers = [_host_port(s) for s in settings.kafka.bootstrap_servers.split(",")]
        assert sorted(servers) == [(b, KAFKA_CLIENT_PORT) for b in BROKERS]


@pytest.mark.parametrize("name", [n for n in MYKO_SERVICES if n != "gateway"])
def test_instance_ids_are_stable_per_replica_slot(stack: dict[str, Any], name: str) -> None:
    # Stable across restarts of one replica and distinct between replicas: the
    # id names the producer in events and its Kafka transactional id.
    assert _raw_env(stack, name)["MYKO_INSTANCE_ID"] == f"{name}-{{{{.Task.Slot}}}}"


@pytest.mark.parametrize("name", MYKO_SERVICES)
def test_health_checks_probe_the_port_the_service_listens_on(stack: dict[str, Any], name: str) -> None:
    service = _service(stack, name)
    assert service["healthcheck"]["test"] == ["CMD", "python", "-m", "devtools.healthcheck"]
    env = _effective_env(stack, name)
    settings, _ = _settings(stack, name)
    assert env[catalogue.SERVICE_ENV] == name
    assert healthcheck.service_port(name, env) == settings.port
    assert catalogue.service(name).http == (name == "gateway")


@pytest.mark.parametrize("name", MYKO_SERVICES)
def test_every_myko_service_has_production_policies(stack: dict[str, Any], name: str) -> None:
    service = _service(stack, name)
    deploy = service["deploy"]
    assert service["image"] == _service(stack, "command")["image"], "one image for every service"
    assert service.get("init") is True
    assert {"interval", "timeout", "retries", "start_period"} <= set(service["healthcheck"])
    assert deploy["restart_policy"]["condition"] == "any"
    assert deploy["update_config"]["order"] in ("start-first", "stop-first")
    assert int(deploy["update_config"]["parallelism"]) == 1
    assert {"cpus", "memory"} <= set(deploy["resources"]["limits"])
    if name in REPLICATED:
        assert int(deploy["replicas"]) > 1


def test_myko_topics_are_replicated_across_the_brokers(stack: dict[str, Any]) -> None:
    for name in MYKO_SERVICES:
        settings, _ = _settings(stack, name)
        if not hasattr(settings, "kafka"):
            continue
        assert settings.kafka.topic_replication_factor == len(BROKERS), name
        assert settings.kafka.topic_min_insync_replicas == 2, name


def test_kafka_is_a_three_node_kraft_quorum(stack: dict[str, Any]) -> None:
    pom = ET.parse(KAFKA_POM).getroot()
    version = pom.findtext("{*}properties/{*}kafka.version")
    assert version, "kafka.version missing from kafka/pom.xml"
    envs = {b: _raw_env(stack, b) for b in BROKERS}
    expected_voters = ",".join(f"{i}@{b}:{KAFKA_CONTROLLER_PORT}" for i, b in enumerate(BROKERS, start=1))
    cluster_ids = {env["CLUSTER_ID"] for env in envs.values()}
    assert len(cluster_ids) == 1 and len(cluster_ids.pop()) == 22, "one fixed base64 cluster id"
    volumes, constraints = set(), set()
    for i, broker in enumerate(BROKERS, start=1):
        service, env = _service(stack, broker), envs[broker]
        # The same Kafka the local tests run, from the official image.
        assert service["image"] == f"apache/kafka:{version}"
        assert int(version.split(".")[0]) >= 4
        assert env["KAFKA_NODE_ID"] == str(i)
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == expected_voters
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{broker}:{KAFKA_CLIENT_PORT}"
        assert env["KAFKA_LISTENERS"] == (
            f"PLAINTEXT://:{KAFKA_CLIENT_PORT},CONTROLLER://:{KAFKA_CONTROLLER_PORT}"
        )
        for replication in (
            "KAFKA_DEFAULT_REPLICATION_FACTOR",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        ):
            assert env[replication] == "3", replication
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
        deploy = service["deploy"]
        assert deploy["endpoint_mode"] == "dnsrr"
        assert int(deploy["replicas"]) == 1
        assert f"node.labels.kafka-{i} == true" in deploy["placement"]["constraints"]
        constraints.update(deploy["placement"]["constraints"])
        [volume] = service["volumes"]
        source, target = _volume_mount(volume)
        assert source in stack["volumes"]
        assert target == env["KAFKA_LOG_DIRS"]
        volumes.add(source)
        assert _duration_s(service["stop_grace_period"]) >= MIN_KAFKA_STOP_GRACE_S
        assert not service.get("ports"), "Kafka stays inside the stack's network"
    assert len(volumes) == len(constraints) == len(BROKERS), "a volume and a node per broker"


def test_the_stack_starts_in_dependency_order(stack: dict[str, Any]) -> None:
    # `make swarm-up` deploys phase by phase (Swarm itself ignores depends_on):
    # brokers and the identity provider, then what reads Kafka, then what calls
    # those, the gateway last.
    phases = swarm_profile.start_phases(stack)
    assert phases[0] == sorted([*BROKERS, "idp"])
    assert "gateway" in phases[-1]
    assert set(phases[-1]) <= {"gateway", "grafana"}
    position = {name: i for i, phase in enumerate(phases) for name in phase}
    assert position["repo"] < position["query"] and position["repo"] < position["report"]
    assert position["command"] < position["saga"]
    assert all(position["idp"] < position[name] for name in AUTHENTICATED)
    assert set(position) == set(stack["services"])


@pytest.mark.parametrize("name", AUTHENTICATED)
def test_every_public_service_requires_tokens_of_the_stacks_issuer(stack: dict[str, Any], name: str) -> None:
    settings, _ = _settings(stack, name)
    assert settings.auth.enabled, f"{name} runs without authentication"
    assert (settings.auth.issuer, settings.auth.audience) == (ISSUER, "urn:myko:api")
    # The provider the stack runs serves exactly that issuer.
    assert _raw_env(stack, "idp")["MYKO_IDP_ISSUER"] == ISSUER


def test_sagas_run_as_their_own_client_whose_secret_is_a_secret(stack: dict[str, Any]) -> None:
    settings, _ = _settings(stack, "saga")
    assert settings.credentials.client_id == "saga_svc"
    assert settings.credentials.client_secret == "<myko_saga_client_secret>"
