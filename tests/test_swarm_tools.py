"""The pieces of `make swarm-up` and `make images` that need no Docker engine.

The single-node adaptation of the stack (devtools/swarm_profile.py) and where
the Debian base image gets its packages from (devtools/debian_base.py). The live
deployment itself is tests/test_swarm_live.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devtools import debian_base, swarm, swarm_profile

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
