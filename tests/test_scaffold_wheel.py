"""The framework taken away from this repository: the built wheel, a fresh virtualenv, `myko new`.

Builds the `myko` wheel from the framework's files alone, installs it into a new
virtualenv in a temporary directory outside the repository, scaffolds an application there with `myko new`, generates
its code with `myko gen`, installs it, runs the application's own scaffolded
test, then starts the whole stack with `myko run --no-kafka` against the test
session's broker and does an Execute -> Watch round trip through it. Nothing of
the repository is on that virtualenv's path, and the scaffolded code must pass
its own `mypy` (strict) against the installed wheel. Every wait is bounded and every
process it started is stopped, checked by the ports being free again.

The dependencies come from PyPI the first time and are kept in a wheelhouse
(~/.cache/myko/test-wheelhouse, or MYKO_TEST_WHEELHOUSE): later runs install
without the network, which keeps this test under two minutes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from myko import catalogue, client_package
from myko.errors import ConfigError
from myko.local.ports import busy_ports
from myko.local.topology import check_port_shift, port_of

# Bounded above the usual 300 s only for the first run on a machine, which fills the wheelhouse.
pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parent.parent
APP = "notes"
STEP_TIMEOUT_S = 240.0
STACK_READY_TIMEOUT_S = 150.0
STOP_TIMEOUT_S = 60.0
WHEELHOUSE = Path(
    os.environ.get("MYKO_TEST_WHEELHOUSE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "myko" / "test-wheelhouse"
)

# Run with the virtualenv's Python: the round trip as a client of the running stack.
ROUND_TRIP = """
import asyncio, json, sys, uuid
from myko import Client, MykoError
from notes.v1 import commands_pb2, queries_pb2

async def execute(client, command):
    tx = str(uuid.uuid4())
    while True:  # what may succeed later is retried with the same tx (once-only)
        try:
            return await client.execute(command, tx=tx)
        except MykoError as exc:
            if not exc.retriable:
                raise
        await asyncio.sleep(0.2)

async def main(command_addr, query_addr):
    async with Client(command_addr=command_addr, query_addr=query_addr) as client:
        notes = client.watch(queries_pb2.OpenNotes())
        first = await asyncio.wait_for(anext(notes), 60)
        added = await asyncio.wait_for(execute(client, commands_pb2.AddNote(title="from the wheel")), 60)
        seen = []
        while not seen:
            seen = await asyncio.wait_for(anext(notes), 60)
        await notes.aclose()
    print(json.dumps({
        "first": [n.title for n in first],
        "id": added.events[0].id,
        "seen": [[n.item.id, n.title] for n in seen],
    }))

asyncio.run(main(*sys.argv[1:3]))
"""


def _clean_env(venv: Path) -> dict[str, str]:
    """Our environment minus this repository's Python and every Myko/Kafka setting."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith(("MYKO_", "KAFKA_"))
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(
    args: list[str], *, cwd: Path, env: Mapping[str, str], timeout_s: float = STEP_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    began = time.monotonic()
    result = subprocess.run(
        args, cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout_s, check=False
    )
    print(f"{time.monotonic() - began:6.1f}s  {' '.join(args[:4])}", flush=True)
    assert result.returncode == 0, f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


def _free_shift() -> int:
    rng = random.Random()
    for _ in range(100):
        shift = rng.randrange(4000, 14000, 10)
        try:
            check_port_shift(shift)
        except ConfigError:
            continue
        if not busy_ports(port_of(s.name, port_shift=shift) for s in catalogue.SERVICES):
            return shift
    raise RuntimeError("no free block of ports for the services")


def _processes_with_env(marker: str) -> list[int]:
    """Pids whose environment contains `marker` (the stack's unique topic prefix)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory, client_tarball: Path) -> Path:
    """The myko wheel, built from pyproject.toml and myko/ alone (nothing else of the repository)."""
    src = tmp_path_factory.mktemp("myko-src")
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copytree(ROOT / "myko", src / "myko", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    assert (src / "myko" / "_ts" / client_package.TARBALL).is_file(), "the wheel carries the UI's client"
    dist = tmp_path_factory.mktemp("dist")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # No isolated build environment: this virtualenv's setuptools builds it (no download each run).
    build = ["pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(dist), "-q"]
    _run([sys.executable, "-m", *build], cwd=src, env=env)
    [built] = dist.glob("myko-*.whl")
    return built


def _pip(venv: Path, *args: str) -> list[str]:
    """pip acting on `venv` (made without pip of its own: ensurepip alone takes half a minute)."""
    return [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), *args]


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("fresh")
    assert not home.resolve().is_relative_to(ROOT), "the virtualenv must live outside the repository"
    venv = home / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    _run([base_python, "-m", "venv", "--without-pip", str(venv)], cwd=home, env=os.environ)
    env = _clean_env(venv)
    # --no-compile: byte-compiling mypy and grpc is most of an install's time.
    offline = ["install", "-q", "--no-compile", "--no-index", "--find-links", str(WHEELHOUSE)]
    offline.append(f"{wheel}[testing,typing]")
    began = time.monotonic()
    first = subprocess.run(
        _pip(venv, *offline), env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT_S
    )
    if first.returncode != 0:
        # Not all in the wheelhouse yet: fetch from PyPI once, then install offline.
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        _run(
            _pip(venv, "download", "-q", "-d", str(WHEELHOUSE), f"{wheel}[testing,typing]"), cwd=home, env=env
        )
        for ours in WHEELHOUSE.glob("myko-*.whl"):
            ours.unlink()  # only ever installed from the wheel just built
        _run(_pip(venv, *offline), cwd=home, env=env)
    print(f"{time.monotonic() - began:6.1f}s  install the wheel and its dependencies", flush=True)
    yield venv


def test_a_new_app_from_the_wheel_runs_its_test_and_round_trips(
    venv: Path, kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = _clean_env(venv)
    bin_dir = venv / "bin"
    # Nothing of the repository is importable from the fresh environment.
    where = _run([str(bin_dir / "python"), "-c", "import myko; print(myko.__file__)"], cwd=tmp_path, env=env)
    assert Path(where.stdout.strip()).resolve().is_relative_to(venv.resolve())

    _run([str(bin_dir / "myko"), "new", APP], cwd=tmp_path, env=env)
    project = tmp_path / APP
    # The UI gets the TypeScript client the wheel carries, for a build of its own.
    assert (project / "ui" / "vendor" / client_package.TARBALL).is_file()
    assert '"@myko/client": "file:vendor/myko-client.tgz"' in (project / "ui" / "package.json").read_text()
    _run([str(bin_dir / "myko"), "gen"], cwd=project, env=env)
    assert (project / APP / "v1" / "entities_pb2.py").is_file()
    generated = (project / APP / "v1" / "queries_pb2.py").read_text()
    assert "from myko.v1 import options_pb2" in generated, "the framework's protos are imported, not copied"
    _run([str(bin_dir / "myko"), "gen", "--check"], cwd=project, env=env)
    # setuptools is there already (grpcio-tools needs it), so no isolated build environment.
    app_install = ["install", "-q", "--no-compile", "--no-index", "--no-build-isolation"]
    app_install += ["--find-links", str(WHEELHOUSE), "."]
    _run(_pip(venv, *app_install), cwd=project, env=env)

    # The scaffolded code passes mypy --strict against the installed framework.
    _run([str(bin_dir / "mypy")], cwd=project, env=env)

    # The application's own scaffolded test, against the session's broker.
    test_env = {**env, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    tested = _run(
        [str(bin_dir / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project, env=test_env
    )
    assert " passed" in tested.stdout and "failed" not in tested.stdout, tested.stdout

    # The whole stack from the virtualenv: `myko run` on the session's broker.
    shift = _free_shift()
    prefix = f"w{uuid.uuid4().hex[:10]}."
    run_env = {**env, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "MYKO_TOPIC_PREFIX": prefix}
    log = tmp_path / "myko-run.log"
    ports = [port_of(s.name, port_shift=shift) for s in catalogue.SERVICES]
    with log.open("wb") as out:
        runner = subprocess.Popen(
            [str(bin_dir / "myko"), "run", "--no-kafka", "--port-shift", str(shift)],
            cwd=project,
            env=run_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STACK_READY_TIMEOUT_S
        while "Ctrl-C stops everything." not in log.read_text(errors="replace"):
            assert runner.poll() is None, f"myko run exited ({runner.returncode}):\n{log.read_text()}"
            assert time.monotonic() < deadline, (
                f"myko run not up in {STACK_READY_TIMEOUT_S}s:\n{log.read_text()}"
            )
            time.sleep(0.5)
        output = log.read_text()
        gateway = port_of("gateway", port_shift=shift)
        assert f"http://127.0.0.1:{gateway}/" in output
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{gateway}/healthz", timeout=10) as reply:
            assert reply.status == 200

        trip = _run(
            [
                str(bin_dir / "python"),
                "-c",
                ROUND_TRIP,
                f"127.0.0.1:{port_of('command', port_shift=shift)}",
                f"127.0.0.1:{port_of('query', port_shift=shift)}",
            ],
            cwd=tmp_path,
            env=env,
            timeout_s=120,
        )
        seen = json.loads(trip.stdout)
        assert seen["first"] == []
        assert seen["seen"] == [[seen["id"], "from the wheel"]]
    finally:
        os.killpg(runner.pid, signal.SIGINT)
        try:
            runner.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait(timeout=10)
        # SIGKILLed, `myko run` could not stop its services: do it here.
        for pid in _processes_with_env(prefix):
            os.kill(pid, signal.SIGKILL)
    assert runner.returncode == 0, log.read_text()
    assert "Stopped." in log.read_text()
    assert not busy_ports(ports), "a service still listens after `myko run` stopped"
    assert not _processes_with_env(prefix), "a process of the stack outlived `myko run`"
