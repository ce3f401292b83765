"""A minimal Debian image made from Debian packages, for machines no registry serves.

    python -m devtools.debian_base [--tag myko-base/debian:bookworm] [--mirror URL]

`debootstrap --variant=minbase` into a scratch directory (needs root), trimmed of
what an image never uses (package caches, docs, man pages, locales), then
`docker import`ed. The image uses the same Debian mirrors as this machine: the
bookworm entries of its apt sources (main archive, updates, security) are
written into the image, and the main archive is what debootstrap installs from.
`--mirror` (or MYKO_DEBIAN_MIRROR) overrides the main archive.

swarm/debian-bases.Dockerfile builds the Python and Java bases on top of it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from devtools.docker_cli import DockerCli, find_cli
from myko.errors import ConfigError

SUITE = "bookworm"
DEFAULT_TAG = f"myko-base/debian:{SUITE}"
# Debian 13, for the identity provider alone: bookworm's Node.js (18) lacks what
# oidc-provider 9 calls (URL.parse, crypto.hash); trixie's is 20.
NODE_SUITE = "trixie"
NODE_BASE_TAG = f"myko-base/debian:{NODE_SUITE}"
FALLBACK_MIRROR = "http://deb.debian.org/debian"
MIRROR_ENV = "MYKO_DEBIAN_MIRROR"
APT_DIR = Path("/etc/apt")

# Trimmed after debootstrap and kept out of later package installs, as Debian's
# own slim images do: an image needs none of these.
DPKG_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""
APT_CLEAN = """\
APT::Install-Recommends "false";
APT::Install-Suggests "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
Acquire::Languages "none";
"""
_TRIM = (
    "var/cache/apt/archives/*.deb",
    "var/cache/apt/*.bin",
    "var/lib/apt/lists/*",
    "var/log/*.log",
    "var/log/apt/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/locale/*",
)
_IMAGE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["bash"]',
)


@dataclass(frozen=True)
class AptSource:
    """One `deb URI SUITE COMPONENTS...` line."""

    uri: str
    suite: str
    components: tuple[str, ...]

    def line(self) -> str:
        return f"deb {self.uri} {self.suite} {' '.join(self.components)}"


def parse_one_line(text: str) -> list[AptSource]:
    """Entries of a sources.list (`deb [options] URI SUITE COMPONENTS`), deb-src ignored."""
    out = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        line = re.sub(r"\[[^\]]*\]\s*", "", line)  # [signed-by=...] options
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "deb":
            out.append(AptSource(parts[1].rstrip("/"), parts[2], tuple(parts[3:]) or ("main",)))
    return out


def parse_deb822(text: str) -> list[AptSource]:
    """Entries of a .sources file (deb822 stanzas), one per URI and suite; disabled ones ignored."""
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for raw in stanza.splitlines():
            if raw.startswith("#"):
                continue
            if raw[:1].isspace() and key:
                fields[key] += " " + raw.strip()
                continue
            name, sep, value = raw.partition(":")
            if sep:
                key = name.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        components = tuple(fields.get("components", "main").split()) or ("main",)
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                out.append(AptSource(uri.rstrip("/"), suite, components))
    return out


def host_sources(apt_dir: Path = APT_DIR) -> list[AptSource]:
    found: list[AptSource] = []
    one_line = apt_dir / "sources.list"
    if one_line.is_file():
        found += parse_one_line(one_line.read_text(errors="replace"))
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix == ".sources":
                found += parse_deb822(path.read_text(errors="replace"))
            elif path.suffix == ".list":
                found += parse_one_line(path.read_text(errors="replace"))
    return found


def image_sources(found: Iterable[AptSource], suite: str, mirror: str | None) -> tuple[str, list[AptSource]]:
    """(the main archive to debootstrap from, the entries the image's apt uses).

    Only the suite's own entries (SUITE, SUITE-updates, SUITE-security) of the
    Debian archive; the `main` component only, as in Debian's images. When the
    host lists none for `suite` (a trixie image on a bookworm host), its entries
    of another Debian suite name the mirrors, retargeted to `suite`.
    """
    found = list(found)
    wanted = (suite, f"{suite}-updates", f"{suite}-security")
    if not any(s.suite in wanted for s in found):
        found = [_retarget(s, suite) for s in found if s.suite.split("-")[0] in _DEBIAN_SUITES]
    ours = [s for s in found if s.suite in wanted]
    ours = [AptSource(s.uri, s.suite, ("main",)) for s in ours]
    main = mirror or next((s.uri for s in ours if s.suite == suite), FALLBACK_MIRROR)
    if mirror or not ours:
        ours = [AptSource(main, suite, ("main",)), *(s for s in ours if s.suite != suite)]
    return main, list(dict.fromkeys(ours))


# Debian's release names (an Ubuntu entry of the host is never retargeted).
_DEBIAN_SUITES = ("bullseye", "bookworm", "trixie", "forky", "stable", "oldstable", "testing")


def _retarget(source: AptSource, suite: str) -> AptSource:
    _, dash, pocket = source.suite.partition("-")
    return AptSource(source.uri, f"{suite}{dash}{pocket}", source.components)


def _trim(root: Path) -> None:
    for pattern in _TRIM:
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    docs = root / "usr/share/doc"
    if docs.is_dir():
        for path in docs.rglob("*"):
            if path.is_file() and path.name != "copyright":
                path.unlink()


def _configure(root: Path, sources: Sequence[AptSource]) -> None:
    (root / "etc/apt/sources.list").write_text("".join(s.line() + "\n" for s in sources))
    (root / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/dpkg/dpkg.cfg.d/myko-slim").write_text(DPKG_EXCLUDES)
    (root / "etc/apt/apt.conf.d/90myko-slim").write_text(APT_CLEAN)
    # The image's apt may not look up the build machine's name.
    (root / "etc/hostname").write_text("localhost\n")


def build(
    docker: DockerCli, *, tag: str = DEFAULT_TAG, mirror: str | None = None, suite: str = SUITE
) -> float:
    """Make the image `tag` of Debian `suite`; returns the seconds it took."""
    if shutil.which("debootstrap") is None:
        raise ConfigError("debootstrap is missing (on Debian: apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise ConfigError("debootstrap needs root to make the Debian base image")
    main, sources = image_sources(host_sources(), suite, mirror or os.environ.get(MIRROR_ENV) or None)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="myko-debian-") as scratch:
        root = Path(scratch) / "rootfs"
        print(f"debootstrap --variant=minbase {suite} from {main}", flush=True)
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", suite, str(root), main],
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )
        if result.returncode != 0:
            log = (root / "debootstrap/debootstrap.log") if root.exists() else None
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else result.stdout[-2000:]
            raise ConfigError(f"debootstrap failed ({result.returncode}): {result.stderr.strip()}\n{tail}")
        _trim(root)
        _configure(root, sources)
        tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        changes = [arg for change in _IMAGE_CHANGES for arg in ("--change", change)]
        imported = subprocess.run(
            [docker.path, "import", *changes, "-", tag],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            env=docker.env(),
            check=False,
            timeout=600,
        )
        if tar.stdout is not None:
            tar.stdout.close()
        tar_rc = tar.wait(timeout=60)
        if tar_rc != 0 or imported.returncode != 0:
            raise ConfigError(f"docker import {tag} failed (tar {tar_rc}): {imported.stderr.strip()}")
    return time.monotonic() - began


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.debian_base", description=__doc__)
    parser.add_argument(
        "--suite", default=SUITE, help=f"Debian release ({SUITE}; {NODE_SUITE} for Node.js 20)"
    )
    parser.add_argument("--tag", default=None, help="default: myko-base/debian:<suite>")
    parser.add_argument("--mirror", default=None, help=f"Debian archive to install from (or ${MIRROR_ENV})")
    args = parser.parse_args(argv)
    try:
        tag = args.tag or f"myko-base/debian:{args.suite}"
        seconds = build(find_cli(), tag=tag, mirror=args.mirror, suite=args.suite)
    except ConfigError as e:
        print(f"debian_base: {e.message}", file=sys.stderr)
        return 1
    print(f"{tag} made in {seconds:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
