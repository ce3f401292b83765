"""Ports on 127.0.0.1: free ones for tests, busy ones to refuse, and the ones browsers refuse.

Browsers will not load a page from some ports (Chromium: ERR_UNSAFE_PORT), so a
UI served there is unreachable however healthy the gateway is. The list is the
Fetch standard's "bad ports" (https://fetch.spec.whatwg.org/#port-blocking),
which Chromium, Firefox and Safari all enforce, plus 0.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

from myko.errors import ConfigError

BROWSER_UNSAFE_PORTS = frozenset(
    {
        0, 1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95,
        101, 102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179,
        389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601,
        636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566,
        6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080,
    }
)  # fmt: skip


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def busy_ports(ports: Iterable[int]) -> list[int]:
    """Ports on 127.0.0.1 someone is listening on already."""
    busy = []
    for port in ports:
        with socket.socket() as s:
            # SO_REUSEADDR: a port in TIME_WAIT is free for our purposes; a listener is not.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                busy.append(port)
    return busy


def browser_safe(port: int) -> bool:
    return 0 < port <= 65535 and port not in BROWSER_UNSAFE_PORTS


def check_browser_ports(ports: Iterable[int], *, what: str) -> None:
    """ConfigError when a port a browser must open is one browsers refuse."""
    bad = sorted({p for p in ports if not browser_safe(p)})
    if bad:
        raise ConfigError(
            f"{what} would put the UI on port {', '.join(map(str, bad))}, which browsers refuse "
            "to open (Chromium: ERR_UNSAFE_PORT; the Fetch standard's bad ports)"
        )
