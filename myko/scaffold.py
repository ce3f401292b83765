"""`myko new`: a new application project from the template shipped in the wheel.

The template is the directory myko/templates/app/. Every file in it ends in
`.tmpl` (so the framework's own linters and type checker never read template
code as code); the rendered file drops the suffix, a leading `_dot_` becomes
`.`, and these tokens are replaced in paths and contents:

    __MYKO_NAME__      the application's name: Python package and proto package
    __MYKO_VERSION__   the installed myko version the project pins

The template's ui/ folder is the UI scaffold (a page with live views and a
command form over the TypeScript client).
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from importlib import metadata, resources
from importlib.resources.abc import Traversable
from pathlib import Path

from myko import client_package
from myko.errors import ConfigError

TEMPLATE = ("templates", "app")
SUFFIX = ".tmpl"
_DOT = "_dot_"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
# Names an application package must not take: they would shadow what it imports.
_TAKEN = frozenset({"myko", "google", "grpc", "reactivex", "aiokafka", "aiohttp", "tests", "test", "ui"})


@dataclass(frozen=True)
class Rendered:
    path: Path  # relative to the project root
    text: str


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"{name!r} cannot name an application: use a lowercase letter, then lowercase letters, "
            "digits or _ (it becomes the Python package and the proto package)"
        )
    if keyword.iskeyword(name) or name in _TAKEN:
        raise ConfigError(f"{name!r} cannot name an application: it would shadow {name!r} in Python")


def _version() -> str:
    try:
        return metadata.version("myko")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "0.1.0"


def _walk(node: Traversable, rel: tuple[str, ...]) -> list[tuple[tuple[str, ...], Traversable]]:
    found: list[tuple[tuple[str, ...], Traversable]] = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name == "__pycache__":
            continue
        if child.is_dir():
            found += _walk(child, (*rel, child.name))
        elif child.name.endswith(SUFFIX):
            found.append(((*rel, child.name), child))
    return found


def render(name: str) -> list[Rendered]:
    """Every file of a new project called `name`, rendered."""
    check_name(name)
    tokens = {"__MYKO_NAME__": name, "__MYKO_VERSION__": _version()}

    def fill(text: str) -> str:
        for token, value in tokens.items():
            text = text.replace(token, value)
        return text

    root = resources.files("myko").joinpath(*TEMPLATE)
    out = []
    for rel, node in _walk(root, ()):
        parts = [fill(p) for p in rel]
        leaf = parts[-1].removesuffix(SUFFIX)
        parts[-1] = "." + leaf.removeprefix(_DOT) if leaf.startswith(_DOT) else leaf
        out.append(Rendered(Path(*parts), fill(node.read_text(encoding="utf-8"))))
    return out


def create(name: str, dest: Path) -> list[Path]:
    """Write a new project called `name` into `dest`, which must not exist or be empty.

    The UI gets its own copy of the TypeScript client the wheel ships
    (ui/vendor/, myko/client_package.py), so the project builds on its own.
    """
    files = render(name)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConfigError(f"{dest} already exists and is not empty")
    ui = any(f.path.parts[0] == "ui" for f in files)
    if ui:
        client_package.tarball()  # a wheel without it fails here, before anything is written
    written = []
    for f in files:
        path = dest / f.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f.text, encoding="utf-8")
        written.append(path)
    if ui:
        written.append(client_package.vendor(dest / "ui"))
    return written
