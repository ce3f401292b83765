"""Where the CPU went during a measurement: each service, Kafka, the bench, everything else.

Read from /proc, so it costs nothing while a measurement runs. "other" is the
whole machine's busy time minus the named processes: on a dedicated machine it
is near zero; when it is not, something else was competing for the CPUs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS_PER_S


def pids_with_argument(fragment: str) -> list[int]:
    """Processes whose command line contains `fragment` (e.g. our broker's data directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if fragment.encode() in cmdline:
            found.append(int(entry.name))
    return found


def load_average() -> str:
    """1, 5 and 15 minute load averages, as the kernel reports them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine_busy_seconds() -> float:
    """CPU time spent not idle, summed over all CPUs, since boot."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()
    # cpu user nice system idle iowait irq softirq steal ...
    ticks = [int(v) for v in first[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / _CLOCK_TICKS_PER_S


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds per name over `wall_s` seconds of wall-clock time."""

    seconds: Mapping[str, float]
    wall_s: float

    @classmethod
    def summed(cls, parts: Sequence[CpuUse]) -> CpuUse:
        """Several measured stretches as one: CPU seconds and wall time added up."""
        names = {name for p in parts for name in p.seconds}
        return cls(
            {name: sum(p.seconds.get(name, 0.0) for p in parts) for name in names},
            sum(p.wall_s for p in parts),
        )


class CpuMeter:
    def __init__(self, pids: Mapping[str, int]) -> None:
        self._pids = dict(pids)
        self._start: tuple[float, dict[str, float], float] | None = None

    def including(self, name: str, pid: int) -> CpuMeter:
        """A meter over the same processes and one more (e.g. a floor's bare server)."""
        return CpuMeter({**self._pids, name: pid})

    def start(self) -> None:
        self._start = (time.perf_counter(), self._sample(), machine_busy_seconds())

    def stop(self) -> CpuUse:
        assert self._start is not None, "start() first"
        t0, before, busy0 = self._start
        wall = time.perf_counter() - t0
        after, busy = self._sample(), machine_busy_seconds() - busy0
        used = {name: after[name] - before[name] for name in self._pids}
        used["other"] = max(0.0, busy - sum(used.values()))
        return CpuUse(used, wall)

    def _sample(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self._pids.items()}
