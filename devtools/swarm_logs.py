"""The errors a deployed stack's services logged, tracebacks included.

A failed live-swarm test prints them beside its assertion (tests/conftest.py):
the stack and its logs are gone after the run, and an INTERNAL answer names
only the ref of a traceback logged server-side. Reads the Myko services' text
logs (myko.logs.TEXT_FORMAT, the stack's default); the brokers', the identity
provider's and Prometheus' are not asked for (their formats differ, and a
broker's log is long).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable

from devtools.docker_cli import DockerCli

# A text log line starts with its time, level and logger; anything else continues the
# line above (a traceback).
_LINE_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (\w+) ([\w.]+): ")
_LEVELS = ("ERROR", "CRITICAL")
# The Kafka client's own lines: every broker fault the test makes fills them with
# reconnects, which would push out the lines that say what went wrong.
_NOISE = ("aiokafka",)


def error_blocks(logs: str) -> list[str]:
    """The ERROR and CRITICAL lines of `logs`, each with its continuation lines, but
    the Kafka client's own."""
    kept: list[str] = []
    keeping = False
    for line in logs.splitlines():
        start = _LINE_START.match(line)
        if start:
            level, logger = start.groups()
            keeping = level in _LEVELS and not logger.startswith(_NOISE)
        if keeping:
            kept.append(line)
    return kept


def service_errors(
    docker: DockerCli, stack_name: str, services: Iterable[str], *, max_lines: int = 300
) -> str:
    """The error blocks of the stack's `services` (short names: "command"), each line
    prefixed with its service; the last `max_lines`."""
    out: list[str] = []
    for service in services:
        name = f"{stack_name}_{service}"
        # Every task's logs, the killed and replaced ones' too (Swarm keeps their containers).
        try:
            logs = docker.run(["service", "logs", "--raw", name], check=False, timeout_s=60)
        except subprocess.TimeoutExpired:
            out.append(f"{name}: its logs did not come within 60 s")
            continue
        out += [f"{name} {line}" for line in error_blocks(logs.stdout + logs.stderr)]
    return "\n".join(out[-max_lines:]) or "no service logged an ERROR"
