"""An application project on disk: where its protos, Python package and UI are.

A project is a directory whose pyproject.toml has a `[tool.myko]` table (what
`myko new` writes):

    [tool.myko]
    app = "notes"         # the module exposing `app: myko.App` (MYKO_APP)
    # proto = "proto"     # .proto files: proto/<package>/v1/*.proto
    # ui = "ui"           # the UI (its build output ui/dist is what the gateway serves)
    # ts_out = "ui/src/gen"  # generated TypeScript

Generated Python goes beside the hand-written package (proto/notes/v1/x.proto ->
notes/v1/x_pb2.py), so the proto package and the Python package share a name.
`myko gen` and `myko run` find the project from the working directory upwards.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from myko.errors import ConfigError

PYPROJECT = "pyproject.toml"


@dataclass(frozen=True, kw_only=True)
class Project:
    root: Path
    app: str
    proto_dir: Path
    ui_dir: Path
    ts_out: Path

    @property
    def ui_dist(self) -> Path:
        """The built UI (vite's output) the gateway serves."""
        return self.ui_dir / "dist"

    @property
    def proto_packages(self) -> list[str]:
        """Top-level proto directories holding .proto files, each generated into its Python package."""
        if not self.proto_dir.is_dir():
            return []
        return sorted(d.name for d in self.proto_dir.iterdir() if d.is_dir() and any(d.rglob("*.proto")))


def load_project(root: Path) -> Project:
    """The project at `root`; ConfigError when its pyproject.toml has no usable [tool.myko]."""
    root = root.resolve()
    path = root / PYPROJECT
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    table = data.get("tool", {}).get("myko")
    if not isinstance(table, dict):
        raise ConfigError(f"{path} has no [tool.myko] table (myko new writes one)")
    app = table.get("app")
    if not isinstance(app, str) or not app.strip():
        raise ConfigError(f"{path}: [tool.myko] app must name the module exposing `app: myko.App`")
    dirs: dict[str, Path] = {}
    defaults = {"proto": "proto", "ui": "ui", "ts_out": f"{table.get('ui', 'ui')}/src/gen"}
    for key, default in defaults.items():
        value = table.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{path}: [tool.myko] {key} must be a directory path")
        dirs[key] = (root / value).resolve()
    return Project(
        root=root, app=app.strip(), proto_dir=dirs["proto"], ui_dir=dirs["ui"], ts_out=dirs["ts_out"]
    )


def find_project(start: Path) -> Project:
    """The nearest project at or above `start`."""
    start = start.resolve()
    for d in (start, *start.parents):
        path = d / PYPROJECT
        if path.is_file():
            with path.open("rb") as f:
                try:
                    has_table = "myko" in tomllib.load(f).get("tool", {})
                except tomllib.TOMLDecodeError as e:
                    raise ConfigError(f"{path}: {e}") from None
            if has_table:
                return load_project(d)
    raise ConfigError(
        f"no Myko project at or above {start}: no pyproject.toml with a [tool.myko] table "
        "(create one with `myko new <name>`)"
    )
