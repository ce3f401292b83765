"""Supervise Myko service processes: start, health-check, stop, kill, restart.

Used by `myko run` / `make run` (myko/local/launcher.py) and by the test
fixtures, so both exercise the services exactly as an operator would:
`python -m <module>` with environment variables. A process that is not a
Python module (the local identity provider, a Node program) gives its whole
`command` instead.

    svc = ServiceProcess(name="query", module="myko.services.query", env={...},
                         grpc_port=50052, log_path=Path(".run/logs/query.log"))
    with svc:              # start() + wait_healthy()
        ...                # stop() on exit: SIGTERM, then SIGKILL

Each service runs as the leader of its own process group, and signals go to
the whole group, so anything the service spawned dies with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from myko import catalogue
from myko.settings import TlsSettings
from myko.tls import Transport

# Dropped from the inherited environment so a service sees only the Myko/Kafka
# settings its caller chose, never stray ones from the developer's shell.
_PRIVATE_ENV_PREFIXES = ("MYKO_", "KAFKA_")
_POLL_S = 0.1
# Keep gRPC's reconnect backoff short while polling a server that is still binding.
_PROBE_CHANNEL_OPTIONS = [
    ("grpc.enable_http_proxy", 0),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]


class ServiceExited(RuntimeError):
    """The service process ended while it was expected to run."""

    def __init__(self, name: str, returncode: int, log_tail: str) -> None:
        super().__init__(f"{name} exited with code {returncode}; last log lines:\n{log_tail}")
        self.name = name
        self.returncode = returncode


def service_env(overrides: Mapping[str, str]) -> dict[str, str]:
    """The environment a service starts with: ours minus MYKO_*/KAFKA_*, plus overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PRIVATE_ENV_PREFIXES)}
    env["PYTHONUNBUFFERED"] = "1"  # logs reach the file as they happen
    env.update(overrides)
    return env


class ServiceProcess:
    """One `python -m <module>` (or `command`) child with a gRPC or HTTP health check."""

    def __init__(
        self,
        *,
        name: str,
        module: str = "",
        log_path: Path,
        env: Mapping[str, str] | None = None,
        grpc_port: int | None = None,
        health_url: str | None = None,
        internal_port: int | None = None,
        args: Sequence[str] = (),
        python: str = sys.executable,
        cwd: Path | None = None,
        metrics_port: int | None = None,
        command: Sequence[str] = (),
    ) -> None:
        if (grpc_port is None) == (health_url is None):
            raise ValueError(f"{name}: give exactly one of grpc_port or health_url")
        if bool(module) == bool(command):
            raise ValueError(f"{name}: give exactly one of module or command")
        self.name = name
        self.module = module
        self.command = tuple(command)
        self.log_path = log_path
        self.env = dict(env or {})
        self.grpc_port = grpc_port
        self.health_url = health_url
        # With TLS: the internal listener beside the public port (command_svc).
        self.internal_port = internal_port
        self.args = tuple(args)
        self.python = python
        # The application's project directory, so `MYKO_APP` imports from it even
        # when not installed (`python -m` puts the working directory on sys.path).
        self.cwd = cwd
        # Where GET /metrics answers (Prometheus scrapes it); None when it serves none.
        self.metrics_port = metrics_port
        self._proc: subprocess.Popen[bytes] | None = None
        self._returncode: int | None = None
        self._log_opened = False

    # -- state -------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """Where clients reach it: HOST:PORT for gRPC, the health URL for HTTP."""
        if self.grpc_port is not None:
            return f"127.0.0.1:{self.grpc_port}"
        assert self.health_url is not None
        return self.health_url

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and not _has_exited(self._proc.pid)

    @property
    def returncode(self) -> int | None:
        """Exit code of the last run once stopped or dead; None while running."""
        if self._proc is not None and _has_exited(self._proc.pid):
            self._reap()
        return self._returncode

    def log_tail(self, *, max_chars: int = 4000) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - max_chars))
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no log)"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ServiceProcess:
        if self.running:
            return self
        self._reap()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # The first start of this object truncates; restarts append, so one file tells
        # the whole story of this service within a run.
        mode = "ab" if self._log_opened else "wb"
        self._log_opened = True
        argv = list(self.command) or [self.python, "-m", self.module, *self.args]
        shown = " ".join(self.command) or f"python -m {self.module} {' '.join(self.args)}"
        with self.log_path.open(mode) as log:
            _write_banner(log, f"starting {self.name}: {shown}")
            self._proc = subprocess.Popen(
                argv,
                cwd=self.cwd,
                env=service_env(self.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group; Ctrl-C reaches only the supervisor
            )
        self._returncode = None
        return self

    def wait_healthy(self, *, timeout_s: float = 60.0) -> None:
        """Block until the health check passes; raise ServiceExited or TimeoutError."""
        if self._proc is None:
            raise RuntimeError(f"{self.name} was not started")
        deadline = time.monotonic() + timeout_s
        with self._prober() as probe:
            while True:
                if not self.running:
                    raise ServiceExited(self.name, self.returncode or 0, self.log_tail())
                if probe():
                    return
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"{self.name} not healthy at {self.address} within {timeout_s}s; "
                        f"last log lines:\n{self.log_tail()}"
                    )
                time.sleep(_POLL_S)

    def is_healthy(self) -> bool:
        """One health probe, without waiting."""
        with self._prober() as probe:
            return probe()

    def stop(self, *, timeout_s: float = 10.0) -> None:
        """SIGTERM the process group; SIGKILL whatever is left after timeout_s."""
        if self._proc is None:
            return
        pid = self._proc.pid
        began = time.monotonic()
        how = "had already exited"
        if not _has_exited(pid):
            _signal_group(pid, signal.SIGTERM)
            how = "stopped by SIGTERM"
            deadline = began + timeout_s
            while not _has_exited(pid):
                if time.monotonic() >= deadline:
                    how = f"SIGKILLed: still running {timeout_s}s after SIGTERM"
                    break
                time.sleep(0.05)
        self._kill_group_and_reap()
        self._log_event(f"{how}; exit code {self._returncode} after {time.monotonic() - began:.1f}s")

    def kill(self) -> None:
        """SIGKILL the process group at once (a crash, for fault tests)."""
        if self._proc is not None:
            self._kill_group_and_reap()
            self._log_event(f"killed with SIGKILL; exit code {self._returncode}")

    def restart(self, *, timeout_s: float = 10.0) -> ServiceProcess:
        """stop() then start(); call wait_healthy() to know it is back."""
        self.stop(timeout_s=timeout_s)
        return self.start()

    def __enter__(self) -> ServiceProcess:
        self.start()
        try:
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ServiceProcess(name={self.name!r}, address={self.address!r}, pid={self.pid})"

    # -- internals ---------------------------------------------------------------------------

    def _kill_group_and_reap(self) -> None:
        assert self._proc is not None
        # The leader is not reaped yet, so its pid (= the group id) cannot have been
        # reused: killing the group now also catches children that outlived it.
        _signal_group(self._proc.pid, signal.SIGKILL)
        self._reap()

    def _log_event(self, text: str) -> None:
        with self.log_path.open("ab") as log:
            _write_banner(log, f"{self.name}: {text}")

    def _reap(self) -> None:
        if self._proc is None:
            return
        self._returncode = self._proc.wait()
        self._proc = None

    def _prober(self) -> _Probe:
        # Probed the way its settings secure it (myko/tls.py), with its own certificate.
        transport = Transport(TlsSettings.from_env(self.env))
        spec = next((s for s in catalogue.SERVICES if s.module == self.module), None)
        if self.grpc_port is not None:
            internal = spec is not None and spec.internal
            return _GrpcProbe(
                self.grpc_port,
                credentials=transport.channel_credentials(internal=internal),
                options=transport.channel_options(spec.name if spec else self.name),
            )
        assert self.health_url is not None
        if transport.https_context() is None:
            return _HttpProbe(self.health_url)
        return _HttpProbe(
            self.health_url.replace("http://", "https://", 1), context=transport.probe_context()
        )


class _Probe:
    """One health check per call; a context manager so the gRPC channel is reused and closed."""

    def __call__(self) -> bool:
        raise NotImplementedError

    def __enter__(self) -> _Probe:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


class _GrpcProbe(_Probe):
    """grpc.health.v1 Health/Check for the whole server (service="")."""

    def __init__(
        self,
        port: int,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        target = f"127.0.0.1:{port}"
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=_PROBE_CHANNEL_OPTIONS)
        else:
            self._channel = grpc.secure_channel(
                target, credentials, options=[*_PROBE_CHANNEL_OPTIONS, *options]
            )
        self._stub = health_pb2_grpc.HealthStub(self._channel)

    def __call__(self) -> bool:
        try:
            reply = self._stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._channel.close()


class _HttpProbe(_Probe):
    """GET the URL; healthy on 200. Ignores proxy settings: the target is loopback."""

    def __init__(self, url: str, *, context: ssl.SSLContext | None = None) -> None:
        self._url = url
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self._opener = urllib.request.build_opener(*handlers)

    def __call__(self) -> bool:
        try:
            with self._opener.open(self._url, timeout=1.0) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False


def _has_exited(pid: int) -> bool:
    """True once the child ended, without reaping it (so its pid stays ours)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _write_banner(log: IO[bytes], text: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    log.write(f"===== {stamp} {text}\n".encode())
    log.flush()


class Stack:
    """Services started in order (each healthy before the next), stopped in reverse.

    A failed start stops everything already started before the error propagates,
    so a caller never has to clean up a half-started stack.
    """

    def __init__(
        self,
        services: Sequence[ServiceProcess],
        *,
        healthy_timeout_s: float = 90.0,
        on_healthy: Callable[[ServiceProcess, float], None] | None = None,
    ) -> None:
        self.services = list(services)
        self.healthy_timeout_s = healthy_timeout_s
        # Told (service, seconds it took) as each one becomes healthy: progress output.
        self.on_healthy = on_healthy
        self._started: list[ServiceProcess] = []

    def start(self) -> Stack:
        try:
            for svc in self.services:
                began = time.monotonic()
                self._started.append(svc)
                svc.start()
                svc.wait_healthy(timeout_s=self.healthy_timeout_s)
                if self.on_healthy is not None:
                    self.on_healthy(svc, time.monotonic() - began)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, *, timeout_s: float = 10.0) -> None:
        while self._started:
            self._started.pop().stop(timeout_s=timeout_s)

    def by_name(self, name: str) -> ServiceProcess:
        for svc in self.services:
            if svc.name == name:
                return svc
        raise KeyError(name)

    def dead(self) -> list[ServiceProcess]:
        """Started services whose process has ended."""
        return [svc for svc in self._started if not svc.running]

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
