"""The pieces of `make swarm-up` and `make images` that need no Docker engine.

The single-node adaptation of the stack (devtools/swarm_profile.py), the
secured overlay as swarm-up deploys it (secrets made, one-shot kafka-access) and
where the Debian base image gets its packages from (devtools/debian_base.py). The live
deployment itself is tests/test_swarm_live.py.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools import debian_base, swarm, swarm_logs, swarm_profile
from devtools.docker_cli import DockerCli, DockerError
from myko import catalogue
from myko.logs import TextFormatter

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def stack() -> dict[str, Any]:
    # As written (anchors merged by the YAML loader), the way swarm-up reads it.
    return swarm.load_stack(ROOT / "swarm" / "docker-stack.yml")


def test_one_node_reserves_nothing_but_keeps_the_limits(stack: dict[str, Any]) -> None:
    deployed, _ = swarm_profile.single_node(stack, base_dir=ROOT / "swarm", ipvs=True)
    for name, service in deployed["services"].items():
        resources = service["deploy"]["resources"]
        assert "reservations" not in resources, name
        assert {"cpus", "memory"} <= set(resources["limits"]), name
        assert "depends_on" not in service, name
    assert all(net["attachable"] for net in deployed["networks"].values())
    assert not [k for k in deployed if k.startswith("x-")]
    # The original is untouched: the next phase starts from it again.
    assert "reservations" in stack["services"]["repo"]["deploy"]["resources"]


def test_config_files_are_found_from_the_deployed_copy(stack: dict[str, Any]) -> None:
    deployed, _ = swarm_profile.single_node(stack, base_dir=ROOT / "swarm", ipvs=True)
    path = Path(deployed["configs"]["gateway_cors_origins"]["file"])
    assert path.is_absolute() and path.is_file()


def test_without_ipvs_names_resolve_to_tasks_and_the_port_binds_on_the_node(stack: dict[str, Any]) -> None:
    deployed, notes = swarm_profile.single_node(stack, base_dir=ROOT / "swarm", ipvs=False)
    services = deployed["services"]
    assert all(s["deploy"]["endpoint_mode"] == "dnsrr" for s in services.values())
    gateway = services["gateway"]
    assert [p["mode"] for p in gateway["ports"]] == ["host"]
    assert gateway["deploy"]["replicas"] == 1
    assert gateway["deploy"]["update_config"]["order"] == "stop-first"
    # query shares its update policy with the gateway in the file (one YAML
    # anchor): changing the gateway's must not change query's.
    assert services["query"]["deploy"]["update_config"]["order"] == "start-first"
    assert services["query"]["deploy"]["replicas"] == 2
    assert any("gateway: 1 replica" in n for n in notes)


def test_with_ipvs_the_stack_keeps_virtual_ips_and_the_routing_mesh(stack: dict[str, Any]) -> None:
    deployed, _ = swarm_profile.single_node(stack, base_dir=ROOT / "swarm", ipvs=True)
    assert "endpoint_mode" not in deployed["services"]["query"]["deploy"]
    assert deployed["services"]["gateway"]["ports"][0]["mode"] == "ingress"
    assert deployed["services"]["gateway"]["deploy"]["replicas"] == 2


def test_start_phases_refuse_cycles_and_unknown_services() -> None:
    with pytest.raises(ValueError, match="cycle"):
        swarm_profile.start_phases({"services": {"a": {"depends_on": ["b"]}, "b": {"depends_on": ["a"]}}})
    with pytest.raises(ValueError, match=r"a depends on \['c'\]"):
        swarm_profile.start_phases({"services": {"a": {"depends_on": ["c"]}}})


def test_phases_deploy_a_growing_part_of_the_stack(stack: dict[str, Any]) -> None:
    first = swarm_profile.start_phases(stack)[0]
    part = swarm_profile.only_services(stack, set(first))
    assert set(part["services"]) == set(first)
    assert part["volumes"] == stack["volumes"] and part["networks"] == stack["networks"]


def test_external_secrets_and_configs_are_listed_by_their_real_names() -> None:
    stack = {
        "secrets": {"tls": {"external": True, "name": "myko_tls_v2"}, "local": {"file": "./x"}},
        "configs": {"issuer": {"external": True}},
    }
    assert swarm.external_objects(stack) == [("secret", "myko_tls_v2"), ("config", "issuer")]


DEB822 = """\
Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm

Types: deb
Enabled: no
URIs: http://off.example/debian
Suites: bookworm
"""


def test_deb822_sources_give_one_entry_per_uri_and_suite() -> None:
    assert debian_base.parse_deb822(DEB822) == [
        debian_base.AptSource("http://mirror.example/debian", "bookworm", ("main", "contrib")),
        debian_base.AptSource("http://mirror.example/debian", "bookworm-updates", ("main", "contrib")),
        debian_base.AptSource("http://mirror.example/debian-security", "bookworm-security", ("main",)),
    ]


def test_one_line_sources_drop_options_comments_and_deb_src() -> None:
    text = (
        "# a comment\n"
        "deb [signed-by=/k.gpg arch=amd64] http://m.example/debian bookworm main non-free\n"
        "deb-src http://m.example/debian bookworm main\n"
        "deb http://m.example/debian-security bookworm-security main # trailing\n"
    )
    assert debian_base.parse_one_line(text) == [
        debian_base.AptSource("http://m.example/debian", "bookworm", ("main", "non-free")),
        debian_base.AptSource("http://m.example/debian-security", "bookworm-security", ("main",)),
    ]


def test_the_image_uses_the_hosts_bookworm_mirrors() -> None:
    found = [
        *debian_base.parse_deb822(DEB822),
        debian_base.AptSource("http://x.example/ubuntu", "noble", ("main",)),
    ]
    main, sources = debian_base.image_sources(found, "bookworm", None)
    assert main == "http://mirror.example/debian"
    assert [s.line() for s in sources] == [
        "deb http://mirror.example/debian bookworm main",
        "deb http://mirror.example/debian bookworm-updates main",
        "deb http://mirror.example/debian-security bookworm-security main",
    ]


def test_a_mirror_given_replaces_the_main_archive_only() -> None:
    main, sources = debian_base.image_sources(
        debian_base.parse_deb822(DEB822), "bookworm", "http://local/debian"
    )
    assert main == "http://local/debian"
    assert sources[0].line() == "deb http://local/debian bookworm main"
    assert "deb http://mirror.example/debian-security bookworm-security main" in [s.line() for s in sources]


def test_without_any_source_the_debian_archive_is_used() -> None:
    main, sources = debian_base.image_sources([], "bookworm", None)
    assert main == debian_base.FALLBACK_MIRROR
    assert [s.line() for s in sources] == [f"deb {debian_base.FALLBACK_MIRROR} bookworm main"]


def test_one_busy_node_gives_health_checks_time(stack: dict[str, Any]) -> None:
    deployed, _ = swarm_profile.single_node(stack, base_dir=ROOT / "swarm", ipvs=True)
    for name, service in deployed["services"].items():
        check = service["healthcheck"]
        assert check["timeout"] == "30s" and check["retries"] >= 5, name
    # The probe itself is unchanged: what is checked stays what production checks.
    assert (
        deployed["services"]["query"]["healthcheck"]["test"]
        == stack["services"]["query"]["healthcheck"]["test"]
    )


# -- the secured stack as `make swarm-up` deploys it -------------------------------------------

SECURED_FILES = swarm.stack_files(secure=True)


@pytest.fixture
def secured() -> dict[str, Any]:
    return swarm.load_stack(*SECURED_FILES)


def _interpolated(value: str, env: dict[str, str]) -> str:
    """`${VAR}`, `${VAR:-default}`, `${VAR-default}` and `${VAR:?error}` filled in as docker does."""

    def fill(m: re.Match[str]) -> str:
        name, op, default = m.group(1), m.group(2) or "", m.group(3) or ""
        value = env.get(name)
        if op == ":-":
            return value or default
        if op == "-":
            return default if value is None else value
        return value or ""

    return re.sub(r"\$\{(\w+)(:?[-?])?([^}]*)\}", fill, value)


def test_the_overlay_merges_as_docker_stack_deploy_does(secured: dict[str, Any]) -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("the docker client is not installed (its merge is the reference)")
    env = {**os.environ, swarm.PORT_VAR: "8080", swarm.ISSUER_VAR: "https://idp.example.com:8443"}
    args = [docker, "stack", "config", *(a for f in SECURED_FILES for a in ("-c", str(f)))]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env, check=False)
    assert result.returncode == 0, result.stderr
    reference = yaml.safe_load(result.stdout)
    assert set(secured["services"]) == set(reference["services"])
    for name, theirs in reference["services"].items():
        ours = secured["services"][name]
        assert {k: _interpolated(str(v), env) for k, v in (ours.get("environment") or {}).items()} == {
            k: str(v) for k, v in (theirs.get("environment") or {}).items()
        }, name
        for key in ("secrets", "configs"):
            assert sorted(r["source"] for r in ours.get(key) or []) == sorted(
                r["source"] for r in theirs.get(key) or []
            ), (name, key)
        assert ours.get("entrypoint") == theirs.get("entrypoint"), name
    assert set(secured["secrets"]) == set(reference["secrets"])


def test_swarm_up_makes_every_secret_of_the_secured_stack_from_one_ca(
    secured: dict[str, Any], tmp_path: Path
) -> None:
    from cryptography import x509

    generated = swarm.secured_secrets(tmp_path, idp_host="192.0.2.7")
    provider = swarm.idp_secrets(tmp_path / "idp")
    wanted = {name for kind, name in swarm.external_objects(secured) if kind == "secret"}
    assert wanted and wanted <= set(generated) | set(provider)
    # The provider's certificate names the address its issuer URL uses (the browsers' and services').
    idp_cert = x509.load_pem_x509_certificate(generated["myko_tls_idp_cert"]().encode())
    idp_names = idp_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "192.0.2.7" in {str(ip) for ip in idp_names.get_values_for_type(x509.IPAddress)}
    assert "idp" in idp_names.get_values_for_type(x509.DNSName)
    ca = x509.load_pem_x509_certificate(generated["myko_tls_ca"]().encode())
    for spec in catalogue.SERVICES:
        cert = x509.load_pem_x509_certificate(generated[f"myko_tls_{spec.name}_cert"]().encode())
        assert cert.issuer == ca.subject, spec.name
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        # The gateway's published port is on this node: https://127.0.0.1 must verify.
        assert "localhost" in names.get_values_for_type(x509.DNSName), spec.name
    # A second `up` keeps what the swarm already holds (same CA, same passwords).
    again = swarm.secured_secrets(tmp_path, idp_host="192.0.2.7")
    assert {n: f() for n, f in again.items()} == {n: f() for n, f in generated.items()}
    assert {n: f() for n, f in swarm.idp_secrets(tmp_path / "idp").items()} == {
        n: f() for n, f in provider.items()
    }
    # Another address: the provider's certificate is made again for it, the rest kept.
    before = {n: f() for n, f in generated.items()}
    moved = {n: f() for n, f in swarm.secured_secrets(tmp_path, idp_host="192.0.2.8").items()}
    changed = {n for n in moved if moved[n] != before[n]}
    assert changed == {"myko_tls_idp_cert", "myko_tls_idp_key"}


def test_the_secured_stack_deploys_with_tls_everywhere_and_the_access_job_first(
    secured: dict[str, Any],
) -> None:
    deployed, _ = swarm_profile.single_node(secured, base_dir=ROOT / "swarm", ipvs=False)
    for spec in catalogue.SERVICES:
        env = deployed["services"][spec.name]["environment"]
        assert env["MYKO_TLS_PUBLIC"] == "true" and env["MYKO_TLS_CERT"], spec.name
    assert swarm.one_shot_services(deployed) == {"kafka-access"}
    assert deployed["services"]["kafka-access"]["healthcheck"] == {"disable": True}
    phases = swarm_profile.start_phases(secured)
    order = {name: i for i, phase in enumerate(phases) for name in phase}
    for user in ("command", "repo", "saga"):
        assert order["kafka-access"] < order[user]
    assert order["kafka-1"] < order["kafka-access"]
    # Without the overlay: no TLS, no job (ARGS=--plaintext, and the live-swarm test).
    plain = swarm.load_stack(*swarm.stack_files(secure=False))
    assert "MYKO_TLS_CERT" not in plain["services"]["command"]["environment"]
    assert not swarm.one_shot_services(plain)


class _Docker(DockerCli):
    """Answers `service ls` / `service ps` the way a swarm does while a job runs and completes."""

    def __init__(self, polls: list[tuple[str, str]]) -> None:
        super().__init__(path="docker")
        object.__setattr__(self, "polls", polls)

    def out(self, *args: str, timeout_s: float = 120.0) -> str:
        polls: list[tuple[str, str]] = self.polls  # type: ignore[attr-defined]
        ls, ps = polls[0]
        if args[:2] == ("service", "ls"):
            if len(polls) > 1:
                polls.pop(0)
            return ls
        assert args[:2] == ("service", "ps") and args[-1] == "s_kafka-access", args
        return ps


def test_a_one_shot_service_counts_once_it_completed_not_while_it_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(swarm, "POLL_S", 0.0)
    docker = _Docker(
        [
            ("s_kafka-1 1/1\ns_kafka-access 1/1", "Running 2 seconds ago"),
            ("s_kafka-1 1/1\ns_kafka-access 0/1", "Failed 1 second ago"),
            ("s_kafka-1 1/1\ns_kafka-access 0/1", "Complete 1 second ago\nFailed 12 seconds ago"),
        ]
    )
    swarm.wait_healthy(docker, expected=2, timeout_s=5, stack_name="s", one_shot={"kafka-access"})
    assert len(docker.polls) == 1  # type: ignore[attr-defined]
    # Not one-shot: 0/1 is not healthy.
    stuck = _Docker([("s_kafka-1 1/1\ns_kafka-access 0/1", "Complete 1 second ago")])
    with pytest.raises(DockerError, match="not healthy"):
        swarm.wait_healthy(stuck, expected=2, timeout_s=0.05, stack_name="s")


def test_error_blocks_keep_each_error_with_its_traceback_but_not_the_kafka_clients() -> None:
    formatter = TextFormatter()

    def line(level: int, message: str, exc: BaseException | None = None, logger: str = "myko.status") -> str:
        exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
        record = logging.LogRecord(logger, level, __file__, 1, message, None, exc_info)
        return formatter.format(record)

    try:
        raise RuntimeError("the cause")
    except RuntimeError as exc:
        failed = line(logging.ERROR, "unexpected error in Execute (ref f35ae9e6ccd9)", exc)
    logs = "\n".join(
        [
            line(logging.INFO, "leading at 10.0.1.5:50051"),
            failed,
            line(logging.WARNING, "commit failed; retrying"),
            "[2026-11-30 10:00:00,000] ERROR a broker's own line (not Myko's)",
            line(logging.ERROR, "Unable connect to node with id 2", logger="aiokafka.conn"),
            line(logging.CRITICAL, "another command_svc took over this transactional id"),
        ]
    )
    blocks = swarm_logs.error_blocks(logs)
    assert blocks[0].endswith("ERROR myko.status: unexpected error in Execute (ref f35ae9e6ccd9)")
    assert blocks[1] == "Traceback (most recent call last):"
    assert blocks[-2] == "RuntimeError: the cause"
    assert blocks[-1].endswith("CRITICAL myko.status: another command_svc took over this transactional id")
    assert not any("leading at" in b or "retrying" in b or "broker" in b or "node" in b for b in blocks)
