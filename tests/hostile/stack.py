"""The hostile suite's target: Kafka plus every service and the gateway as real processes.

Each service is its own `python -m <module>` process (myko.local.topology, as
`make run` starts them), on free ports and with its own topic prefix, so its resident
memory can be read per service from /proc and a dead one is noticed.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from myko.errors import ConfigError
from myko.local.ports import busy_ports
from myko.local.procs import ServiceProcess, Stack
from myko.local.topology import check_port_shift, local_stack, port_of, ports_of

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("repo", "command", "query", "report", "saga", "gateway")
_SHIFTS = range(5000, 14000, 100)


def _free_shift() -> int:
    shifts = list(_SHIFTS)
    random.shuffle(shifts)  # other stacks on this machine start from the low shifts
    for shift in shifts:
        try:
            check_port_shift(shift)
        except ConfigError:
            continue
        # Service and metrics ports alike (each service also serves GET /metrics).
        if not busy_ports(p for s in SERVICES for p in ports_of(s, port_shift=shift)):
            return shift
    raise RuntimeError("no free block of service ports found")


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (VmRSS), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            kib = int(line.split()[1])
            return kib * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Memory:
    """RSS per service: at the baseline, and the highest seen since."""

    baseline: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)

    def growth(self) -> dict[str, int]:
        return {name: self.peak[name] - self.baseline[name] for name in self.baseline}


class HostileStack:
    """Started by the package fixture; `sample()` records RSS, `dead()` names any that died."""

    def __init__(self, *, bootstrap_servers: str, topic_prefix: str, log_dir: Path) -> None:
        self.topic_prefix = topic_prefix
        self.shift = _free_shift()
        self.log_dir = log_dir
        self.services: list[ServiceProcess] = local_stack(
            app="targets",
            bootstrap_servers=bootstrap_servers,
            log_dir=log_dir,
            port_shift=self.shift,
            instance_prefix=f"hostile-{topic_prefix}",
            extra_env={
                "MYKO_TOPIC_PREFIX": topic_prefix,
                "MYKO_LOG_LEVEL": "WARNING",
                "MYKO_GATEWAY_LIVE_HEARTBEAT_MS": "2000",
            },
        )
        self._stack = Stack(self.services, healthy_timeout_s=120.0)
        self.memory = Memory()

    def start(self) -> None:
        self._stack.start()

    def stop(self) -> None:
        self._stack.stop()

    def port(self, short: str) -> int:
        return port_of(short, port_shift=self.shift)

    def addr(self, short: str) -> str:
        return f"127.0.0.1:{self.port(short)}"

    def by_name(self, short: str) -> ServiceProcess:
        return self._stack.by_name(short)

    def dead(self) -> list[str]:
        return [svc.name for svc in self._stack.dead()]

    def rss(self) -> dict[str, int]:
        out = {}
        for svc in self.services:
            if svc.pid is not None and svc.running:
                out[svc.name] = rss_bytes(svc.pid)
        return out

    def set_baseline(self) -> None:
        self.memory.baseline = self.rss()
        self.memory.peak = dict(self.memory.baseline)

    def sample(self) -> None:
        for name, value in self.rss().items():
            self.memory.peak[name] = max(self.memory.peak.get(name, 0), value)

    def unhealthy(self) -> list[str]:
        """Services alive but not answering their health check (a wedged event loop)."""
        return [svc.name for svc in self.services if svc.running and not _healthy_soon(svc)]


def _healthy_soon(svc: ServiceProcess, *, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if svc.is_healthy():
            return True
        time.sleep(0.2)
    return False
