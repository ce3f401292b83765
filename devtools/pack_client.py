"""Packs the @myko/client npm package (client-ts/) into the tarball the myko wheel ships.

    python -m devtools.pack_client [--out myko/_ts/myko-client.tgz]

`npm pack` runs the package's `prepack` (svelte-package: JavaScript, .d.ts and
the components into dist/) and writes the tarball; the package's version must be
the wheel's, since `myko new` hands the two out together.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import tomllib
from pathlib import Path

from myko.client_package import TARBALL

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "client-ts"
DEFAULT_OUT = ROOT / "myko" / "_ts" / TARBALL
PACK_TIMEOUT_S = 300


def pack(out: Path) -> Path:
    version = json.loads((PACKAGE / "package.json").read_text())["version"]
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    if version != wheel:
        raise SystemExit(f"client-ts/package.json version {version} is not the myko version {wheel}")
    with tempfile.TemporaryDirectory(prefix="myko-client-") as tmp:
        subprocess.run(
            ["npm", "pack", "--silent", "--pack-destination", tmp],
            cwd=PACKAGE,
            check=True,
            timeout=PACK_TIMEOUT_S,
            stdout=subprocess.DEVNULL,
        )
        [packed] = Path(tmp).glob("*.tgz")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(packed, out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the tarball goes")
    print(pack(ap.parse_args().out))


if __name__ == "__main__":
    main()
