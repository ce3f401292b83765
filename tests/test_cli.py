"""The `myko` command and what it stands on: the service catalogue, projects, the scaffold, port shifts.

The whole path from a built wheel in a fresh virtualenv is tests/test_scaffold_wheel.py;
these are the quick checks of each piece, without a broker.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from myko import catalogue, cli, client_package, scaffold
from myko.errors import ConfigError
from myko.local.kafka import LocalKafka
from myko.local.ports import BROWSER_UNSAFE_PORTS, browser_safe
from myko.local.security import KAFKA_USERS, cluster_security
from myko.local.topology import check_port_shift, cluster_stack, local_stack, port_of
from myko.project import find_project, load_project
from myko.settings import (
    CommandSettings,
    GatewaySettings,
    QuerySettings,
    ReportSettings,
    RepoSettings,
    SagaSettings,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "targets"


# -- the catalogue ---------------------------------------------------------------------------


def test_every_catalogued_service_runs_from_its_module() -> None:
    for spec in catalogue.SERVICES:
        module = importlib.import_module(spec.module)
        assert callable(module.main), spec.module
        runner = ROOT / spec.runner / "__main__.py"
        assert f"from {spec.module} import main" in runner.read_text(), f"{runner} is not a thin runner"


def test_settings_default_to_the_catalogue() -> None:
    env = {"MYKO_APP": "targets", "MYKO_AUTH_DISABLED": "true"}
    for settings in (CommandSettings, RepoSettings, QuerySettings, ReportSettings, SagaSettings):
        s = settings.from_env(env)
        assert s.port == catalogue.service(s.service).port
    assert GatewaySettings.from_env({"MYKO_AUTH_DISABLED": "true"}).port == catalogue.GATEWAY.port
    saga = SagaSettings.from_env(env)
    assert saga.group_id == catalogue.SAGA_GROUP_ID
    assert saga.command_addr == catalogue.COMMAND.default_addr
    assert QuerySettings.from_env(env).repo_addr == catalogue.REPO.default_addr


def test_an_unknown_service_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="unknown service 'kafka'; choose one of repo, command"):
        catalogue.service("kafka")


# -- port shifts -----------------------------------------------------------------------------


def test_a_shift_onto_a_port_browsers_refuse_is_refused() -> None:
    assert 10080 in BROWSER_UNSAFE_PORTS and not browser_safe(10080)
    with pytest.raises(ConfigError, match=r"UI on port 10080.*ERR_UNSAFE_PORT"):
        check_port_shift(2000)
    # Replica 2's gateway (8180) counts too.
    with pytest.raises(ConfigError, match="10080"):
        check_port_shift(1900, replicas=2)
    check_port_shift(1900)
    check_port_shift(1000, replicas=2)
    with pytest.raises(ConfigError, match="outside 1024-65535"):
        check_port_shift(20000)


def test_stacks_are_built_only_on_browser_safe_shifts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        local_stack(app="targets", bootstrap_servers="127.0.0.1:1", log_dir=tmp_path, port_shift=2000)
    services = cluster_stack(
        app="targets", bootstrap_servers="127.0.0.1:1", log_dir=tmp_path, port_shift=1000
    )
    gateways = [s for s in services if s.health_url is not None]
    assert [s.health_url for s in gateways] == [
        f"http://127.0.0.1:{port_of('gateway', replica=n, port_shift=1000)}/healthz" for n in (1, 2)
    ]
    assert {s.module for s in services} == {spec.module for spec in catalogue.SERVICES}
    assert all(s.env["MYKO_APP"] == "targets" for s in services)


def test_make_run_is_plaintext_and_run_cluster_secured_per_service(tmp_path: Path) -> None:
    """`make run`: no TLS, no Kafka login. `make run-cluster`: each service its certificate,
    each Kafka user its own login, and the services without Kafka no Kafka settings at all."""
    plain = local_stack(app="targets", bootstrap_servers="127.0.0.1:1", log_dir=tmp_path)
    for svc in plain:
        secured = sorted(k for k in svc.env if k.startswith(("MYKO_TLS_", "MYKO_KAFKA_")))
        assert not secured, f"{svc.name}: {secured}"
    kafka = LocalKafka(data_dir=tmp_path / "kafka", nodes=3, sasl_users=KAFKA_USERS)
    security = cluster_security(kafka, tmp_path / "pki")
    services = cluster_stack(
        app="targets", bootstrap_servers=kafka.bootstrap_servers, log_dir=tmp_path, security=security
    )
    for svc in services:
        name = svc.name.rsplit("-", 1)[0]
        assert svc.env["MYKO_TLS_CERT"] == str(security.certs[name].cert), svc.name
        if name in KAFKA_USERS:
            assert svc.env["MYKO_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
            assert svc.env["MYKO_KAFKA_USERNAME"] == name
            assert svc.env["MYKO_KAFKA_PASSWORD"] == kafka.password(name)
        else:
            assert not [k for k in svc.env if k.startswith(("KAFKA_", "MYKO_KAFKA_"))], svc.name
    assert set(KAFKA_USERS) == {"command", "repo", "saga"}


def test_myko_run_refuses_an_unsafe_shift_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    code = cli.main(
        ["run", "--project", str(EXAMPLE), "--run-dir", str(tmp_path), "--port-shift", "2000", "--no-kafka"]
    )
    assert code == 2
    assert "KAFKA_BOOTSTRAP_SERVERS" in capsys.readouterr().err
    code = cli.main(["run", "--project", str(EXAMPLE), "--run-dir", str(tmp_path), "--port-shift", "2000"])
    assert code == 2
    assert "10080" in capsys.readouterr().err
    assert not (tmp_path / "shift-2000" / "kafka").exists(), "nothing was started"


# -- projects and the scaffold ---------------------------------------------------------------


def test_a_project_is_found_from_below_and_its_layout_read() -> None:
    project = find_project(EXAMPLE / "targets" / "v1")
    assert project.root == EXAMPLE
    assert project.app == "targets"
    assert project.proto_packages == ["targets"]
    assert project.ui_dist == ROOT / "ui" / "dist"
    assert project.ts_out == ROOT / "gen" / "ts"


def test_a_directory_without_a_project_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="myko new"):
        find_project(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.myko]\napp = ""\n')
    with pytest.raises(ConfigError, match=r"\[tool.myko\] app"):
        load_project(tmp_path)


def test_the_example_generates_through_myko_gen_exactly_as_checked_in() -> None:
    # `myko gen` and `make gen` share myko/codegen.py: the CLI's path reproduces what is committed.
    assert cli.main(["gen", "--check", "--project", str(EXAMPLE)]) == 0


def test_the_scaffold_renders_every_token_and_the_project_layout() -> None:
    files = {str(f.path): f.text for f in scaffold.render("notes")}
    assert {
        "pyproject.toml",
        ".gitignore",
        "proto/notes/v1/entities.proto",
        "proto/notes/v1/commands.proto",
        "proto/notes/v1/queries.proto",
        "proto/notes/v1/reports.proto",
        "notes/__init__.py",
        "tests/test_notes.py",
    } <= set(files)
    assert "ui/src/pages/NotesPage.svelte" in files, "the UI scaffold: a page with live views and a form"
    for name, text in files.items():
        assert "__MYKO_" not in name + text, name
    assert 'app = "notes"' in files["pyproject.toml"]
    assert 'option (myko.v1.query) = { result: "notes.v1.Note" }' in files["proto/notes/v1/queries.proto"]


def test_new_writes_the_project_and_vendors_the_ui_client(tmp_path: Path, client_tarball: Path) -> None:
    tarball = client_package.tarball()
    assert cli.main(["new", "notes", "--dir", str(tmp_path / "notes")]) == 0
    project = load_project(tmp_path / "notes")
    assert project.app == "notes" and project.proto_packages == ["notes"]
    vendored = tmp_path / "notes" / "ui" / "vendor" / client_package.TARBALL
    assert vendored.read_bytes() == tarball.read_bytes()


@pytest.mark.parametrize("name", ["Notes", "9lives", "my-app", "myko", "class", "tests", ""])
def test_names_that_cannot_be_packages_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="cannot name an application"):
        scaffold.render(name)


def test_new_never_writes_into_a_directory_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    assert cli.main(["new", "notes", "--dir", str(tmp_path / "notes")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "notes").iterdir()] == ["keep.txt"]
