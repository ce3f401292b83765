"""The Docker command line, found once and used for every docker call of devtools.

Image builds need BuildKit (the Dockerfiles choose stages by build argument, and
only BuildKit skips the stages a build does not use). Docker 23 and later build
with BuildKit only through the buildx plugin; older clients (Debian bookworm's
docker.io, 20.10) have it built in behind DOCKER_BUILDKIT=1. So the client is the
first of $DOCKER, `docker` on the PATH and Debian's /usr/bin/docker that can do
that, and the same client runs everything else, so one API version talks to the
engine throughout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from myko.errors import ConfigError

DOCKER_ENV = "DOCKER"
DEBIAN_CLIENT = "/usr/bin/docker"
# The first client version that needs the buildx plugin for BuildKit.
BUILDX_REQUIRED_FROM = 23


class DockerError(RuntimeError):
    """A docker command failed; the message carries its stderr."""


@dataclass(frozen=True)
class DockerCli:
    path: str

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["DOCKER_BUILDKIT"] = "1"
        # The CLI would print hints and "What's next" banners into captured output.
        env["DOCKER_CLI_HINTS"] = "false"
        env.update(extra or {})
        return env

    def run(
        self,
        args: Sequence[str],
        *,
        check: bool = True,
        capture: bool = True,
        timeout_s: float | None = 600.0,
        input_text: str | None = None,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`docker ARGS`; stdout and stderr captured as text unless `capture` is false."""
        result = subprocess.run(
            [self.path, *args],
            input=input_text,
            capture_output=capture,
            text=True,
            timeout=timeout_s,
            cwd=cwd,
            env=self.env(env),
            check=False,
        )
        if check and result.returncode != 0:
            detail = (result.stderr or result.stdout or "").strip() if capture else "see the output above"
            raise DockerError(f"docker {' '.join(args)} failed ({result.returncode}): {detail}")
        return result

    def out(self, *args: str, timeout_s: float = 120.0) -> str:
        return self.run(args, timeout_s=timeout_s).stdout.strip()

    def engine_reachable(self) -> tuple[bool, str]:
        """Whether an engine answers, and what it said (its version, or the error)."""
        try:
            result = self.run(["version", "--format", "{{.Server.Version}}"], check=False, timeout_s=20)
        except subprocess.TimeoutExpired:
            return False, "the engine did not answer within 20 s"
        if result.returncode != 0:
            return False, (result.stderr or result.stdout).strip()
        return True, result.stdout.strip()


def _client_major(path: str) -> int | None:
    try:
        result = subprocess.run(
            [path, "version", "--format", "{{.Client.Version}}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    # The client prints its own version even when no engine answers (exit 1 then).
    head = result.stdout.strip().split(".", 1)[0]
    return int(head) if head.isdigit() else None


def _has_buildx(path: str) -> bool:
    try:
        result = subprocess.run([path, "buildx", "version"], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def can_buildkit(path: str) -> bool:
    major = _client_major(path)
    if major is None:
        return False
    return major < BUILDX_REQUIRED_FROM or _has_buildx(path)


def find_cli(env: Mapping[str, str] | None = None) -> DockerCli:
    """The docker client to use (see the module doc); ConfigError naming the fix otherwise."""
    env = os.environ if env is None else env
    wanted = env.get(DOCKER_ENV, "").strip()
    if wanted:
        path = shutil.which(wanted)
        if path is None:
            raise ConfigError(f"{DOCKER_ENV}={wanted!r} is not an executable")
        if not can_buildkit(path):
            raise ConfigError(
                f"{DOCKER_ENV}={wanted!r} cannot build with BuildKit: install its buildx plugin"
            )
        return DockerCli(path)
    candidates = [p for p in (shutil.which("docker"), DEBIAN_CLIENT) if p and os.access(p, os.X_OK)]
    for path in dict.fromkeys(candidates):
        if can_buildkit(path):
            return DockerCli(path)
    if not candidates:
        raise ConfigError("no docker client: install Docker (on Debian: apt-get install docker.io)")
    raise ConfigError(
        f"{', '.join(candidates)} cannot build with BuildKit: install the buildx plugin, "
        f"or Debian's docker.io (its client has BuildKit built in), or set {DOCKER_ENV}="
    )
