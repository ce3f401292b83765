"""The `@myko/client` npm package as the wheel ships it, for the UI `myko new` scaffolds.

The TypeScript client is not on the npm registry: the wheel carries it as an
npm tarball (`myko/_ts/myko-client.tgz`, built by `make client-pack` from
client-ts/), and a scaffolded UI depends on a copy of it in its own tree
(`ui/vendor/myko-client.tgz`, `"@myko/client": "file:vendor/myko-client.tgz"`),
so the application's repository builds without this wheel or the network's
npm registry knowing the package.
"""

from __future__ import annotations

import shutil
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from myko.errors import ConfigError

TARBALL = "myko-client.tgz"
VENDOR_DIR = "vendor"


def tarball() -> Traversable:
    """The packed client inside the installed myko package."""
    packed = resources.files("myko").joinpath("_ts", TARBALL)
    if not packed.is_file():
        raise ConfigError(
            f"this myko installation has no TypeScript client ({packed}): "
            "build it with `make client-pack` before building the wheel"
        )
    return packed


def vendor(ui_dir: Path | str, *, source: Path | None = None) -> Path:
    """Copies the client tarball (or `source`) to `ui_dir/vendor/myko-client.tgz`; returns that path."""
    dest = Path(ui_dir) / VENDOR_DIR / TARBALL
    dest.parent.mkdir(parents=True, exist_ok=True)
    if source is not None:
        shutil.copyfile(source, dest)
    else:
        with resources.as_file(tarball()) as packed:
            shutil.copyfile(packed, dest)
    return dest
