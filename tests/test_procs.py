"""myko.local.procs against real child processes: a tiny gRPC health server and an HTTP one.

Every test checks that nothing is left running, including a grandchild the
service spawned (it must die with its parent's process group).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from myko.local.ports import free_port
from myko.local.procs import ServiceExited, ServiceProcess, Stack

# A stand-in service. FAKE_MODE: "ok" serves SERVING after FAKE_DELAY_S;
# "never" stays NOT_SERVING; "crash" exits 3 at once; "stubborn" ignores SIGTERM.
FAKE_GRPC_SVC = """
import os, signal, subprocess, sys, time
from concurrent import futures
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

mode = os.environ["FAKE_MODE"]
seen, stray = os.environ.get("MYKO_SEEN", "-"), os.environ.get("MYKO_STRAY", "-")
print("env MYKO_SEEN=" + seen + " MYKO_STRAY=" + stray)
if mode == "crash":
    print("boom: cannot start", flush=True)
    sys.exit(3)
child = subprocess.Popen(["sleep", "300"])
with open(os.environ["FAKE_PID_FILE"], "w") as f:
    f.write(str(child.pid))
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
status = health.HealthServicer()
health_pb2_grpc.add_HealthServicer_to_server(status, server)
server.add_insecure_port("127.0.0.1:" + os.environ["FAKE_PORT"])
server.start()
status.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
stopping = False
def on_term(signum, frame):
    global stopping
    stopping = mode != "stubborn"
signal.signal(signal.SIGTERM, on_term)
time.sleep(float(os.environ.get("FAKE_DELAY_S", "0")))
if mode != "never":
    status.set("", health_pb2.HealthCheckResponse.SERVING)
while not stopping:
    time.sleep(0.05)
server.stop(0)
child.terminate()
print("stopped at", time.time_ns(), flush=True)
"""

FAKE_HTTP_SVC = """
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

HTTPServer(("127.0.0.1", int(os.environ["FAKE_PORT"])), Health).serve_forever()
"""


@pytest.fixture
def svc_dir(tmp_path: Path) -> Path:
    (tmp_path / "fake_grpc_svc.py").write_text(FAKE_GRPC_SVC)
    (tmp_path / "fake_http_svc.py").write_text(FAKE_HTTP_SVC)
    return tmp_path


def grpc_svc(svc_dir: Path, name: str = "fake", **env: str) -> ServiceProcess:
    port = free_port()
    return ServiceProcess(
        name=name,
        module="fake_grpc_svc",
        cwd=svc_dir,
        env={"FAKE_MODE": "ok", "FAKE_PORT": str(port), "FAKE_PID_FILE": str(svc_dir / f"{name}.pid")} | env,
        grpc_port=port,
        log_path=svc_dir / "logs" / f"{name}.log",
    )


def grandchild(svc_dir: Path, name: str = "fake", *, within_s: float = 30.0) -> int:
    """The pid the fake service's child wrote; on a loaded machine it may not have yet."""
    pid_file = svc_dir / f"{name}.pid"
    deadline = time.monotonic() + within_s
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, f"{pid_file} not written within {within_s}s"
        time.sleep(0.05)
    return int(pid_file.read_text())


def gone(pid: int, *, within_s: float = 3.0) -> bool:
    """True when pid is no longer a live process (a zombie awaiting init counts as gone)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(autouse=True)
def no_stray_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The supervisor must not leak the caller's MYKO_* settings into services.
    monkeypatch.setenv("MYKO_STRAY", "leaked")
    yield


def test_start_healthy_stop_leaves_nothing(svc_dir: Path) -> None:
    svc = grpc_svc(svc_dir, FAKE_DELAY_S="0.5", MYKO_SEEN="yes")
    svc.start()
    try:
        assert not svc.is_healthy()  # NOT_SERVING during the delay
        svc.wait_healthy(timeout_s=10)
        assert svc.is_healthy()
        child = grandchild(svc_dir)
    finally:
        svc.stop(timeout_s=5)
    assert not svc.running
    assert svc.returncode == 0  # it shut down on SIGTERM, no SIGKILL needed
    assert gone(child)
    assert svc.grpc_port is not None and port_free(svc.grpc_port)
    log = svc.log_path.read_text()
    assert "env MYKO_SEEN=yes MYKO_STRAY=-" in log


def test_stop_escalates_to_sigkill(svc_dir: Path) -> None:
    with grpc_svc(svc_dir, FAKE_MODE="stubborn") as svc:
        child = grandchild(svc_dir)
        started = time.monotonic()
        svc.stop(timeout_s=0.5)
        assert time.monotonic() - started < 3
    assert svc.returncode == -9
    assert gone(child)
    assert "SIGKILLed: still running 0.5s after SIGTERM" in svc.log_path.read_text()


def test_kill_then_restart(svc_dir: Path) -> None:
    with grpc_svc(svc_dir) as svc:
        first = grandchild(svc_dir)
        svc.kill()
        assert svc.returncode == -9
        assert gone(first)
        assert not svc.is_healthy()
        svc.start()
        svc.wait_healthy(timeout_s=10)
        second = grandchild(svc_dir)
        assert second != first
        svc.restart()
        svc.wait_healthy(timeout_s=10)
        third = grandchild(svc_dir)
    assert gone(second) and gone(third)
    log = svc.log_path.read_text()
    assert log.count(" starting fake: ") == 3  # restarts append to one log
    assert "killed with SIGKILL" in log


def test_crash_on_start_reports_the_log(svc_dir: Path) -> None:
    svc = grpc_svc(svc_dir, FAKE_MODE="crash")
    svc.start()
    with pytest.raises(ServiceExited, match="boom: cannot start") as info:
        svc.wait_healthy(timeout_s=10)
    assert info.value.returncode == 3
    svc.stop()


def test_never_serving_times_out(svc_dir: Path) -> None:
    svc = grpc_svc(svc_dir, FAKE_MODE="never")
    svc.start()
    try:
        with pytest.raises(TimeoutError, match="not healthy"):
            svc.wait_healthy(timeout_s=1.5)
        child = grandchild(svc_dir)
    finally:
        svc.stop()
    assert gone(child)


def test_http_health(svc_dir: Path) -> None:
    port = free_port()
    svc = ServiceProcess(
        name="gateway",
        module="fake_http_svc",
        cwd=svc_dir,
        env={"FAKE_PORT": str(port)},
        health_url=f"http://127.0.0.1:{port}/healthz",
        log_path=svc_dir / "gateway.log",
    )
    with svc:
        assert svc.is_healthy()
        pid = svc.pid
    assert pid is not None and gone(pid)
    assert not svc.is_healthy()


def test_stack_failed_start_stops_what_started(svc_dir: Path) -> None:
    first = grpc_svc(svc_dir, name="first")
    broken = grpc_svc(svc_dir, name="broken", FAKE_MODE="crash")
    never = grpc_svc(svc_dir, name="never")
    stack = Stack([first, broken, never], healthy_timeout_s=10)
    with pytest.raises(ServiceExited):
        stack.start()
    assert not first.running and first.returncode == 0
    assert gone(grandchild(svc_dir, "first"))
    assert never.pid is None  # the stack stopped before reaching it


def test_stack_stops_in_reverse_order(svc_dir: Path) -> None:
    services = [grpc_svc(svc_dir, name=n) for n in ("a", "b")]
    with Stack(services, healthy_timeout_s=10) as stack:
        assert all(s.is_healthy() for s in services)
        assert stack.dead() == []
        pids = [grandchild(svc_dir, n) for n in ("a", "b")]
    assert all(not s.running for s in services)
    assert all(gone(p) for p in pids)
    a_stopped, b_stopped = (stopped_at(s) for s in services)
    assert b_stopped < a_stopped


def stopped_at(svc: ServiceProcess) -> int:
    line = next(ln for ln in svc.log_path.read_text().splitlines() if ln.startswith("stopped at"))
    return int(line.split()[-1])


def test_exactly_one_health_check_required(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ServiceProcess(name="x", module="x", log_path=tmp_path / "x.log")
    with pytest.raises(ValueError):
        ServiceProcess(name="x", module="x", log_path=tmp_path / "x.log", grpc_port=1, health_url="http://x")
