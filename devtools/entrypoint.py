"""Container entrypoint: one image for every service, chosen when it starts.

    python -m devtools.entrypoint [SERVICE]       # SERVICE defaults to $MYKO_SERVICE

The service's module comes from the catalogue (myko/catalogue.py). Swarm hands secrets and configs to a container as files. For every
`MYKO_*_FILE` or `KAFKA_*_FILE` variable this sets the variable without the
suffix to that file's contents (trailing newline dropped), the convention of the
official database images: settings keep reading plain variables, and any of
them can come from a secret or config. Then the process replaces itself with
`python -m <service module>`, so no wrapper sits between the service and the
signals Swarm sends.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from myko import catalogue
from myko.catalogue import SERVICE_ENV
from myko.errors import ConfigError

# Only the settings' namespaces: other *_FILE variables belong to someone else.
_FILE_PREFIXES = ("MYKO_", "KAFKA_")
_FILE_SUFFIX = "_FILE"


def resolve_file_vars(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with every `NAME_FILE=/path` also providing `NAME` from the file."""
    resolved = dict(env)
    for name, path in env.items():
        if not (name.endswith(_FILE_SUFFIX) and name.startswith(_FILE_PREFIXES)):
            continue
        target = name.removesuffix(_FILE_SUFFIX)
        if target in env:
            raise ConfigError(f"{target} and {name} are both set; set one")
        try:
            resolved[target] = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as e:
            raise ConfigError(f"{name}={path!r} cannot be read: {e.strerror}") from None
    return resolved


def service_module(service: str) -> str:
    try:
        return catalogue.service(service).module
    except ConfigError as e:
        raise ConfigError(f"{SERVICE_ENV}: {e.message}") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    service = args[0] if args else os.environ.get(SERVICE_ENV, "").strip()
    try:
        if not service:
            raise ConfigError(f"no service: pass one or set {SERVICE_ENV}")
        module = service_module(service)
        env = resolve_file_vars(os.environ)
    except ConfigError as e:
        print(f"myko entrypoint: {e.message}", file=sys.stderr)
        return 2
    env[SERVICE_ENV] = service
    os.execve(sys.executable, [sys.executable, "-m", module], env)


if __name__ == "__main__":
    sys.exit(main())
