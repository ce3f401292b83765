"""The secured Swarm stack (docker-stack.yml + docker-stack.security.yml) agrees with the code.

Read as `docker stack config -c ... -c ...` merges the two files. Checked: each
service mounts its own certificate (the identity its peers check) and reads
every variable it is given; only command, repo and saga get Kafka settings,
each as its own user; the brokers are configured as myko/kafka_access.py says
a secured broker is; every secret the stack declares is one `myko stack-secrets`
makes. A live deploy of the secured stack is not run here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from recording_env import RecordingEnv

from devtools import swarm
from myko import catalogue
from myko.kafka_access import broker_sasl_properties
from myko.settings import (
    PATH_SETTINGS,
    CommandSettings,
    GatewaySettings,
    KafkaAccessSettings,
    QuerySettings,
    ReportSettings,
    RepoSettings,
    SagaSettings,
)
from myko.stack_secrets import make_stack_secrets

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "swarm" / "docker-stack.yml"
SECURITY = ROOT / "swarm" / "docker-stack.security.yml"
BROKER_RUN = ROOT / "swarm" / "kafka-sasl-run.sh"
BROKERS = ("kafka-1", "kafka-2", "kafka-3")
SETTINGS: dict[str, Any] = {
    "command": CommandSettings.from_env,
    "repo": RepoSettings.from_env,
    "query": QuerySettings.from_env,
    "report": ReportSettings.from_env,
    "saga": SagaSettings.from_env,
    "gateway": GatewaySettings.from_env,
}
# What the broker run script exports from the JAAS secrets (they hold passwords).
JAAS_PROPERTIES = (
    "listener.name.sasl_plaintext.plain.sasl.jaas.config",
    "listener.name.controller.plain.sasl.jaas.config",
)


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("the docker client is not installed (it merges the two files)")
    result = subprocess.run(
        [docker, "stack", "config", "-c", str(BASE), "-c", str(SECURITY)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        # The base stack requires the issuer (devtools/swarm.py sets it).
        env={**os.environ, "MYKO_OIDC_ISSUER": "https://idp.example.com:8443"},
        check=False,
    )
    assert result.returncode == 0, (
        f"docker stack config rejected the two files (their `version:` lines must agree):\n{result.stderr}"
    )
    loaded = yaml.safe_load(result.stdout)
    assert isinstance(loaded, dict)
    return loaded


def _env(stack: dict[str, Any], name: str) -> dict[str, str]:
    return {k: str(v) for k, v in (stack["services"][name].get("environment") or {}).items()}


def _mounted(stack: dict[str, Any], name: str) -> dict[str, str]:
    """Path inside the container -> the secret mounted there."""
    return {
        f"/run/secrets/{ref.get('target') or ref['source']}": ref["source"]
        for ref in stack["services"][name].get("secrets") or []
    }


def _configs(stack: dict[str, Any], name: str) -> dict[str, Path]:
    """Path inside the container -> the file in this repository a config is made from."""
    out = {}
    for ref in stack["services"][name].get("configs") or []:
        path = Path(stack["configs"][ref["source"]]["file"])
        out[ref.get("target") or f"/{ref['source']}"] = path if path.is_absolute() else SECURITY.parent / path
    return out


def _resolved(stack: dict[str, Any], name: str) -> dict[str, str]:
    """The environment after *_FILE is read: a config's file as it is, a secret as `<its name>`."""
    env, mounted, configs = _env(stack, name), _mounted(stack, name), _configs(stack, name)
    out = dict(env)
    for key, path in env.items():
        if key.endswith("_FILE") and key.startswith(("MYKO_", "KAFKA_")) and key not in PATH_SETTINGS:
            target = key.removesuffix("_FILE")
            if path in configs:
                out[target] = configs[path].read_text().rstrip("\r\n")
                continue
            assert path in mounted, f"{name}: {key}={path} but no secret is mounted there"
            out[target] = f"<{mounted[path]}>"
    return out


@pytest.mark.parametrize("name", list(SETTINGS))
def test_each_service_proves_its_own_identity_and_reads_all_it_is_given(
    stack: dict[str, Any], name: str
) -> None:
    env, mounted = _resolved(stack, name), _mounted(stack, name)
    assert mounted[env["MYKO_TLS_CERT"]] == f"myko_tls_{name}_cert", "the certificate names the service"
    assert mounted[env["MYKO_TLS_KEY"]] == f"myko_tls_{name}_key"
    assert mounted[env["MYKO_TLS_CA"]] == "myko_tls_ca"
    recording = RecordingEnv(env)
    settings = SETTINGS[name](recording)
    assert settings.tls.enabled and settings.tls.public, (
        "TLS is on in the secured stack, public listeners too"
    )
    unread = {
        k for k in env if k.startswith(("MYKO_", "KAFKA_")) and not k.endswith("_FILE")
    } - recording.read
    assert not unread - {catalogue.SERVICE_ENV}, f"{name} sets variables no code reads: {sorted(unread)}"


@pytest.mark.parametrize("name", list(SETTINGS))
def test_only_kafka_users_get_kafka_and_each_as_itself(stack: dict[str, Any], name: str) -> None:
    env = _resolved(stack, name)
    kafka_vars = {k for k in env if k.startswith(("KAFKA_", "MYKO_KAFKA_"))}
    if not catalogue.service(name).kafka:
        assert not kafka_vars, f"{name} has Kafka settings {sorted(kafka_vars)}"
        return
    settings = SETTINGS[name](env)
    assert settings.kafka.security_protocol == "SASL_PLAINTEXT"
    assert settings.kafka.sasl_mechanism == "SCRAM-SHA-512"
    assert settings.kafka.username == name
    assert settings.kafka.password == f"<myko_kafka_{name}_password>"


def test_the_saga_calls_command_svc_on_its_internal_port(stack: dict[str, Any]) -> None:
    settings = SagaSettings.from_env(_resolved(stack, "saga"))
    assert settings.command_addr == f"command:{catalogue.COMMAND.internal_port}"


def _property(env_key: str) -> str:
    # The Kafka image's rule: KAFKA_ dropped, `___` is '-', `__` is '_', `_` is '.'.
    key = env_key.removeprefix("KAFKA_").lower()
    return (
        key.replace("___", "\0").replace("__", "\1").replace("_", ".").replace("\0", "-").replace("\1", "_")
    )


@pytest.mark.parametrize("broker", BROKERS)
def test_brokers_are_configured_as_myko_secures_a_broker(stack: dict[str, Any], broker: str) -> None:
    env = _env(stack, broker)
    props = {_property(k): v for k, v in env.items() if k.startswith("KAFKA_") and k != "KAFKA_HEAP_OPTS"}
    expected = broker_sasl_properties(
        listener="SASL_PLAINTEXT", broker_password="b", admin_password="a", controller_password="c"
    )
    for key, value in expected.items():
        if key in JAAS_PROPERTIES:
            assert key not in props, f"{broker}: {key} holds passwords; it must come from a secret"
            continue
        assert props.get(key) == value, f"{broker}: {key}"
    assert props["advertised.listeners"] == f"SASL_PLAINTEXT://{broker}:9092"
    assert props["inter.broker.listener.name"] == "SASL_PLAINTEXT"
    # The run script exports exactly the JAAS properties, from the secrets it is given.
    service = stack["services"][broker]
    assert service["entrypoint"] == ["/bin/bash", "/run/configs/kafka-sasl-run"]
    script = BROKER_RUN.read_text()
    mounted = _mounted(stack, broker)
    for key in JAAS_PROPERTIES:
        variable = "KAFKA_" + key.replace("_", "__").replace(".", "_").upper()
        assert f"export {variable}=" in script, variable
    for path in mounted:
        assert path in script, f"the run script does not read {path}"


def test_prometheus_scrapes_the_https_gateway_trusting_the_mounted_ca(stack: dict[str, Any]) -> None:
    assert GatewaySettings.from_env(_resolved(stack, "gateway")).tls.public, "the gateway serves HTTPS"
    config_file = _configs(stack, "prometheus")["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load(config_file.read_text())
    [gateway] = [j for j in config["scrape_configs"] if j["job_name"] == "gateway"]
    assert gateway["scheme"] == "https"
    # The CA every service trusts, where the config reads it; no certificate or key of its own.
    assert _mounted(stack, "prometheus") == {gateway["tls_config"]["ca_file"]: "myko_tls_ca"}
    assert gateway["tls_config"]["server_name"] == "gateway"


def test_the_access_job_creates_every_service_user(stack: dict[str, Any]) -> None:
    settings = KafkaAccessSettings.from_env(_resolved(stack, "kafka-access"))
    assert settings.kafka.username == "admin" and settings.kafka.sasl_mechanism == "PLAIN"
    users = [s.name for s in catalogue.SERVICES if s.kafka]
    assert sorted(settings.passwords) == sorted(users)
    assert all(p == f"<myko_kafka_{u}_password>" for u, p in settings.passwords.items())


def test_the_stack_declares_exactly_the_secrets_stack_secrets_makes(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    made = make_stack_secrets(tmp_path)
    # The identity provider's own (configuration, keys, saga_svc's client secret): `make swarm-up`'s.
    provider = swarm.idp_secrets(tmp_path / "idp")
    declared = {name for name, spec in (stack.get("secrets") or {}).items() if spec.get("external")}
    used = {ref["source"] for svc in stack["services"].values() for ref in svc.get("secrets") or []}
    assert declared == set(made) | set(provider) == used
    # The CA's key signs certificates; no container ever needs it.
    assert all(path.name != "ca.key" for path in made.values())
