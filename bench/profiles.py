"""py-spy profiles of the services during chosen bench phases (`python -m bench --profile DIR`).

py-spy (a dev dependency) samples a running process from outside, so the
services run unchanged. Each profile is written as collapsed stacks
("frame;frame;... count" lines, `py-spy record --format raw`) and summarised:
where the samples sit by package, and the busiest functions by self time.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import TracebackType

_RATE_HZ = 250
# "function (path/to/file.py:123)" -> the path
_FRAME_FILE = re.compile(r"\((.*?)(?::\d+)?\)$")
_GROUPS = [
    ("aiokafka", "aiokafka"),
    ("grpc", "grpc"),
    ("protobuf", "google/protobuf"),
    ("reactivex", "reactivex"),
    ("asyncio", "asyncio"),
    ("myko", "myko/"),
    ("targets app", "targets/"),
]


class PySpy:
    """`with PySpy(pid, path):` records `pid` into `path` until the block ends."""

    def __init__(self, pid: int, path: Path) -> None:
        self.pid = pid
        self.path = path
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PySpy:
        # Beside this interpreter (the venv's bin/, not necessarily on PATH), else on PATH.
        beside = Path(sys.executable).parent / "py-spy"
        exe = str(beside) if beside.exists() else shutil.which("py-spy")
        if exe is None:
            raise RuntimeError("py-spy is not installed: `make setup` installs the dev extras")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            [
                *(exe, "record", "--pid", str(self.pid), "--rate", str(_RATE_HZ)),
                *("--format", "raw", "--output", str(self.path), "--nonblocking"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc is None:
            return
        # SIGINT makes py-spy stop sampling and write what it has.
        self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def _group(frame: str) -> str | None:
    m = _FRAME_FILE.search(frame)
    path = m.group(1) if m else frame
    for name, fragment in _GROUPS:
        if fragment in path:
            return name
    return None


def summarise(path: Path, *, top: int = 12) -> list[str]:
    """Lines: share of samples whose stack passes through each package, then top self-time frames."""
    total = 0
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        for name in {g for f in frames if (g := _group(f)) is not None}:
            inclusive[name] += count
        leaf[frames[-1]] += count
    if total == 0:
        return [f"{path.name}: no samples"]
    # py-spy leaves out idle threads' samples: these are where the CPU went.
    out = [f"{path.name}: {total} busy samples at {_RATE_HZ} Hz"]
    out.append(
        "  stacks through: "
        + ", ".join(f"{name} {100 * n / total:.0f}%" for name, n in inclusive.most_common())
    )
    out.append("  top self time:")
    out += [f"    {100 * n / total:5.1f}%  {frame}" for frame, n in leaf.most_common(top)]
    return out
