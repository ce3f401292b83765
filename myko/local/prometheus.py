"""A local Prometheus (Debian's `prometheus` package) scraping a local Myko stack.

    myko run --prometheus          # make run ARGS=--prometheus

The configuration is generated from the processes the launcher started (the
catalogue's services, their metrics ports): one job per service, named as in
the catalogue, with the framework's alert rules (myko/metrics/alerts.yml)
loaded. Prometheus keeps its data under the run directory and listens on
127.0.0.1 only. docs/observability.md tells how to use it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from myko import catalogue
from myko.errors import ConfigError
from myko.local.procs import ServiceProcess

# Where Prometheus's own UI and API listen by default (plus --port-shift).
PROMETHEUS_PORT = 9090
# The framework's alert rules, shipped in the wheel next to the metrics they use.
ALERT_RULES = Path(__file__).resolve().parent.parent / "metrics" / "alerts.yml"
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ScrapeTarget:
    job: str  # the service's catalogue name
    address: str  # HOST:PORT serving GET /metrics


def targets_of(services: Iterable[ServiceProcess]) -> list[ScrapeTarget]:
    """The metrics endpoints of the catalogue's services among `services`."""
    by_module = {spec.module: spec.name for spec in catalogue.SERVICES}
    return [
        ScrapeTarget(by_module[svc.module], f"127.0.0.1:{svc.metrics_port}")
        for svc in services
        if svc.metrics_port is not None and svc.module in by_module
    ]


def prometheus_config(
    targets: Sequence[ScrapeTarget],
    *,
    rule_files: Sequence[Path] = (ALERT_RULES,),
    scrape_interval_s: float = 5.0,
) -> str:
    """prometheus.yml for `targets` (JSON, which is YAML too): one job per service, in catalogue order."""
    jobs: dict[str, list[str]] = {}
    for t in targets:
        jobs.setdefault(t.job, []).append(t.address)
    interval = f"{int(scrape_interval_s * 1000)}ms"
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": job,
                "scrape_timeout": interval,
                "static_configs": [{"targets": addresses}],
            }
            for job, addresses in jobs.items()
        ],
    }
    return json.dumps(config, indent=2) + "\n"


def find_prometheus() -> str:
    path = shutil.which("prometheus")
    if path is None:
        raise ConfigError(
            "--prometheus needs the `prometheus` binary: install Debian's package "
            "(apt-get install prometheus), or leave the option out"
        )
    return path


class LocalPrometheus:
    """One Prometheus process with its config, data and log under `data_dir`."""

    def __init__(self, *, data_dir: Path, port: int, config: str, binary: str | None = None) -> None:
        self.data_dir = data_dir
        self.port = port
        self._config = config
        self._binary = binary or find_prometheus()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "prometheus.log"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "prometheus.yml"
        config.write_text(self._config)
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [
                    self._binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.data_dir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=2d",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with code {self._proc.returncode}; see {self.log_path}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus not ready within {READY_TIMEOUT_S}s; see {self.log_path}")
            time.sleep(0.2)

    def stop(self, *, timeout_s: float = 10.0) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def __enter__(self) -> LocalPrometheus:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
