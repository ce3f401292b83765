"""Build the images the Swarm stack runs: Myko's (Dockerfile), Kafka's (kafka/Dockerfile),
Prometheus's (swarm/prometheus/Dockerfile: Debian's package, on either base) and the
identity provider's (idp/Dockerfile: npm's oidc-provider on Node).

    python -m devtools.images [--base auto|official|debian] [--refresh-base]

The Dockerfiles build on official images by default (python:3.11-slim-bookworm,
node:20-bookworm-slim, eclipse-temurin:17-jre). Where no registry serves them,
the same Dockerfiles build on bases made from Debian packages, chosen by build
arguments:

- `myko-base/debian:bookworm`: debootstrap + docker import (devtools/debian_base.py),
  made once and reused (`--refresh-base` remakes it, for security updates);
- `myko-base/python:3.11-bookworm` and `myko-base/jre:17-bookworm` on top of it
  (swarm/debian-bases.Dockerfile), Debian's Python 3.11 and OpenJDK 17; and
  `myko-base/node:20-trixie` for the identity provider, on a Debian 13 base made
  the same way (bookworm's Node.js 18 cannot run oidc-provider 9);
- the UI is then built on the host (`make ui-build`, Node 20) and copied from
  ui/dist, because Debian bookworm's Node (18) is too old for the UI's Vite; the
  identity provider's npm packages are installed on the host too (`npm ci` from
  the lockfile into idp/.image-deps/), as Debian's Node comes without npm.

`auto` (the default, or MYKO_IMAGE_BASE) uses the official bases when the
engine has them or can pull them, the Debian ones otherwise. Docker's layer
cache makes a rebuild with unchanged inputs take seconds.
"""

from __future__ import annotations

import argparse
import enum
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devtools import debian_base
from devtools.docker_cli import DockerCli, DockerError, find_cli
from myko.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
BASE_ENV = "MYKO_IMAGE_BASE"
KAFKA_DIR = ROOT / "kafka"
DEBIAN_BASES = ROOT / "swarm" / "debian-bases.Dockerfile"
UI_DIST = ROOT / "ui" / "dist"
PROMETHEUS_DIR = ROOT / "swarm" / "prometheus"
# Debian bookworm's prometheus package: the version the tests and `myko run --prometheus` use.
PROMETHEUS_TAG = "myko-prometheus:2.42"

OFFICIAL_PYTHON = "python:3.11-slim-bookworm"
OFFICIAL_NODE = "node:20-bookworm-slim"
OFFICIAL_JRE = "eclipse-temurin:17-jre"
DEBIAN_PYTHON = "myko-base/python:3.11-bookworm"
DEBIAN_JRE = "myko-base/jre:17-bookworm"
DEBIAN_NODE = "myko-base/node:20-trixie"
IDP_DIR = ROOT / "idp"
# Where the host's `npm ci` puts the provider's packages for a DEPS_FROM=context build.
IDP_DEPS = IDP_DIR / ".image-deps"
NPM_TIMEOUT_S = 600.0
PULL_TIMEOUT_S = 300.0
# The build machine's CA certificates, handed to the builds as the secret
# `ca-bundle` so pip and npm inside trust what this machine trusts (a
# TLS-inspecting proxy, a private index). Never stored in an image layer.
CA_BUNDLE_ENVS = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
CA_BUNDLE_DEFAULT = Path("/etc/ssl/certs/ca-certificates.crt")


class Base(enum.Enum):
    AUTO = "auto"
    OFFICIAL = "official"
    DEBIAN = "debian"


def myko_tag() -> str:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return f"myko:{version}"


def kafka_version() -> str:
    version = ET.parse(KAFKA_DIR / "pom.xml").getroot().findtext("{*}properties/{*}kafka.version")
    if not version:
        raise ConfigError("kafka/pom.xml has no kafka.version")
    return version


def kafka_tag() -> str:
    return f"myko-kafka:{kafka_version()}"


def idp_tag() -> str:
    return f"myko-idp:{myko_tag().split(':', 1)[1]}"


@dataclass
class Built:
    """What a run built: tags, seconds per step, and the images' sizes in bytes."""

    base: Base
    myko: str
    kafka: str
    idp: str = ""
    prometheus: str = PROMETHEUS_TAG
    seconds: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"images on {self.base.value} bases:"]
        lines += [f"  {tag:<34} {size / 1e6:7.0f} MB" for tag, size in self.sizes.items()]
        lines += [f"  {step:<34} {s:7.1f} s" for step, s in self.seconds.items()]
        return "\n".join(lines)


def _has_image(docker: DockerCli, ref: str) -> bool:
    return docker.run(["image", "inspect", ref], check=False, timeout_s=60).returncode == 0


def can_get(docker: DockerCli, ref: str) -> bool:
    """The image is on the engine, or a pull brings it."""
    if _has_image(docker, ref):
        return True
    try:
        return docker.run(["pull", "-q", ref], check=False, timeout_s=PULL_TIMEOUT_S).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def choose_base(docker: DockerCli, wanted: Base) -> Base:
    if wanted is not Base.AUTO:
        return wanted
    official = (OFFICIAL_PYTHON, OFFICIAL_NODE, OFFICIAL_JRE)
    if all(can_get(docker, ref) for ref in official):
        return Base.OFFICIAL
    print("official base images cannot be pulled: building on Debian bases instead", flush=True)
    return Base.DEBIAN


def ca_bundle(env: Mapping[str, str]) -> Path | None:
    for name in CA_BUNDLE_ENVS:
        value = env.get(name, "").strip()
        if value and Path(value).is_file():
            return Path(value)
    return CA_BUNDLE_DEFAULT if CA_BUNDLE_DEFAULT.is_file() else None


def _build(
    docker: DockerCli,
    *,
    tag: str,
    context: Path,
    dockerfile: Path | None = None,
    target: str | None = None,
    args: Mapping[str, str] | None = None,
) -> None:
    cmd = ["build", "--progress=plain", "-t", tag]
    if dockerfile is not None:
        cmd += ["-f", str(dockerfile)]
    if target is not None:
        cmd += ["--target", target]
    for name, value in (args or {}).items():
        cmd += ["--build-arg", f"{name}={value}"]
    bundle = ca_bundle(os.environ)
    if bundle is not None:
        cmd += ["--secret", f"id=ca-bundle,src={bundle}"]
    before = _image_id(docker, tag)
    result = docker.run([*cmd, str(context)], check=False, timeout_s=1800)
    if result.returncode != 0:
        # BuildKit writes its progress, with the failing step's output, to stderr.
        raise DockerError(f"building {tag} failed:\n{result.stderr[-6000:]}")
    if before and before != _image_id(docker, tag):
        # The image the tag named before is now untagged: remove it unless a
        # container still uses it (rebuilds would pile up otherwise).
        docker.run(["image", "rm", before], check=False)


def _image_id(docker: DockerCli, ref: str) -> str:
    result = docker.run(["image", "inspect", "--format", "{{.Id}}", ref], check=False, timeout_s=60)
    return result.stdout.strip() if result.returncode == 0 else ""


def _debian_bases(docker: DockerCli, built: Built, *, refresh: bool) -> None:
    if refresh or not _has_image(docker, debian_base.DEFAULT_TAG):
        built.seconds["debootstrap + import"] = debian_base.build(docker)
    if refresh or not _has_image(docker, debian_base.NODE_BASE_TAG):
        built.seconds[f"debootstrap + import ({debian_base.NODE_SUITE})"] = debian_base.build(
            docker, tag=debian_base.NODE_BASE_TAG, suite=debian_base.NODE_SUITE
        )
    # No file is copied: an empty context keeps the daemon from reading any.
    with tempfile.TemporaryDirectory(prefix="myko-ctx-") as empty:
        for target, tag in (("python", DEBIAN_PYTHON), ("jre", DEBIAN_JRE), ("node", DEBIAN_NODE)):
            began = time.monotonic()
            _build(docker, tag=tag, context=Path(empty), dockerfile=DEBIAN_BASES, target=target)
            built.seconds[tag] = time.monotonic() - began


def stage_idp_deps(staging: Path = IDP_DEPS) -> Path:
    """The provider's npm packages, installed on the host from the lockfile (for DEPS_FROM=context)."""
    npm = shutil.which("npm")
    if npm is None:
        raise ConfigError(
            "npm is missing: the identity provider's packages are installed with the host's npm"
        )
    if staging.exists():
        shutil.rmtree(staging)
    for manifest in (
        "package.json",
        "package-lock.json",
        "idp/package.json",
        "ui/package.json",
        "client-ts/package.json",
    ):
        (staging / manifest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / manifest, staging / manifest)
    result = subprocess.run(
        [npm, "ci", "--omit=dev", "--workspace=idp", "--ignore-scripts", "--no-audit", "--no-fund"],
        cwd=staging,
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        raise ConfigError(f"npm ci for the identity provider failed:\n{result.stderr[-3000:]}")
    # The workspace links itself; the image has server.mjs beside node_modules instead.
    shutil.rmtree(staging / "node_modules" / "@myko", ignore_errors=True)
    return staging / "node_modules"


def build_all(docker: DockerCli, *, base: Base = Base.AUTO, refresh_base: bool = False) -> Built:
    """Build both images (and the Debian bases when used); returns what and how long."""
    if not (KAFKA_DIR / "target" / "lib").is_dir():
        raise ConfigError("kafka/target/lib is missing: run `make setup` (it resolves Kafka's jars)")
    chosen = choose_base(docker, base)
    built = Built(base=chosen, myko=myko_tag(), kafka=kafka_tag(), idp=idp_tag())
    myko_args: dict[str, str] = {}
    kafka_args: dict[str, str] = {}
    idp_args: dict[str, str] = {}
    prometheus_args: dict[str, str] = {}
    if chosen is Base.DEBIAN:
        if not (UI_DIST / "index.html").is_file():
            raise ConfigError("ui/dist is missing: run `make ui-build` first (the UI is built on the host)")
        _debian_bases(docker, built, refresh=refresh_base)
        myko_args = {"PYTHON_IMAGE": DEBIAN_PYTHON, "UI_FROM": "context"}
        kafka_args = {"JRE_IMAGE": DEBIAN_JRE}
        prometheus_args = {"BASE": debian_base.DEFAULT_TAG}
        began = time.monotonic()
        stage_idp_deps()
        built.seconds["npm ci (identity provider)"] = time.monotonic() - began
        idp_args = {"NODE_IMAGE": DEBIAN_NODE, "DEPS_FROM": "context"}
    for tag, context, dockerfile, args in (
        (built.myko, ROOT, None, myko_args),
        (built.kafka, KAFKA_DIR, None, kafka_args),
        (built.prometheus, PROMETHEUS_DIR, None, prometheus_args),
        (built.idp, ROOT, IDP_DIR / "Dockerfile", idp_args),
    ):
        began = time.monotonic()
        _build(docker, tag=tag, context=context, dockerfile=dockerfile, args=args)
        built.seconds[tag] = time.monotonic() - began
    for tag in (built.myko, built.kafka, built.prometheus, built.idp):
        built.sizes[tag] = int(docker.out("image", "inspect", "--format", "{{.Size}}", tag))
    return built


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.images", description=__doc__)
    parser.add_argument(
        "--base",
        choices=[b.value for b in Base],
        default=os.environ.get(BASE_ENV, Base.AUTO.value) or Base.AUTO.value,
        help=f"which base images (default: ${BASE_ENV} or auto)",
    )
    parser.add_argument("--refresh-base", action="store_true", help="remake the Debian base from the mirror")
    args = parser.parse_args(argv)
    try:
        docker = find_cli()
        reachable, detail = docker.engine_reachable()
        if not reachable:
            raise ConfigError(f"no Docker engine answers ({docker.path}): {detail}")
        began = time.monotonic()
        built = build_all(docker, base=Base(args.base), refresh_base=args.refresh_base)
    except (ConfigError, DockerError) as e:
        print(f"images: {e}", file=sys.stderr)
        return 1
    print(built.summary())
    print(
        f"built in {time.monotonic() - began:.0f}s: MYKO_IMAGE={built.myko} MYKO_KAFKA_IMAGE={built.kafka}"
        f" MYKO_PROMETHEUS_IMAGE={built.prometheus} MYKO_IDP_IMAGE={built.idp}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
