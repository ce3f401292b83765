"""The stack the browser tests drive: Kafka, the identity provider, every service and the gateway, plus a control port.

    python -m devtools.ui_stack [--run-dir .run/e2e] [--token-ttl 20]

Started by ui/e2e/global-setup.ts. It picks ports that are free (so a `make run`
may be up beside it), prints one JSON line once everything is healthy:

    {"gateway": "http://127.0.0.1:11080", "control": "http://127.0.0.1:PORT", "idp": "http://127.0.0.1:PORT",
     "tokenTtlS": 20, "clients": {"tests-north": "<secret>", ...}, ...}

Tokens are short-lived (MYKO_E2E_TOKEN_TTL_S, default 20 s), so every test
runs across token renewals, not only the one that checks them. The demo users
are myko/local/idp.py's (alice/bob in tenant north, carol/dave in south).

and serves POST /restart/<service> on the control port, which the test that
restarts the gateway under an open page uses. It stops everything when it gets
SIGTERM or SIGINT, or when its stdin closes (the test runner died), so a
crashed test run leaves nothing behind.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType

from myko import catalogue
from myko.errors import ConfigError
from myko.local.idp import LocalIdp
from myko.local.kafka import LocalKafka
from myko.local.ports import browser_safe, busy_ports, free_port
from myko.local.procs import Stack
from myko.local.topology import check_port_shift, local_stack, port_of, ports_of

ROOT = Path(__file__).resolve().parent.parent
FIRST_SHIFT = 3000
SHIFT_STEP = 100
HEALTHY_TIMEOUT_S = 180.0
TOKEN_TTL_S = 20


def _free_shift() -> int:
    for shift in range(FIRST_SHIFT, FIRST_SHIFT + 20 * SHIFT_STEP, SHIFT_STEP):
        try:
            check_port_shift(shift)
        except ConfigError:
            continue  # the browser under test would refuse the gateway's port
        if not busy_ports(p for s in catalogue.SERVICES for p in ports_of(s.name, port_shift=shift)):
            return shift
    raise RuntimeError("no free block of service ports found")


def _browser_port() -> int:
    # The browser under test opens the identity provider's pages too.
    while not browser_safe(port := free_port()):
        pass
    return port


class _Control(BaseHTTPRequestHandler):
    stack: Stack
    lock = threading.Lock()

    def do_POST(self) -> None:
        action, _, name = self.path.strip("/").partition("/")
        try:
            svc = self.stack.by_name(name)
        except KeyError:
            self._reply(404, {"error": f"no service {name!r}"})
            return
        with self.lock:
            if action == "restart":
                svc.restart()
                svc.wait_healthy(timeout_s=HEALTHY_TIMEOUT_S)
            elif action == "stop":
                svc.stop()
            elif action == "start":
                svc.start()
                svc.wait_healthy(timeout_s=HEALTHY_TIMEOUT_S)
            else:
                self._reply(404, {"error": f"unknown action {action!r}"})
                return
        self._reply(200, {"service": name, "action": action, "running": svc.running})

    def _reply(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        return


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m devtools.ui_stack")
    ap.add_argument("--run-dir", type=Path, default=ROOT / ".run" / "e2e")
    ap.add_argument(
        "--token-ttl",
        type=int,
        default=int(os.environ.get("MYKO_E2E_TOKEN_TTL_S", TOKEN_TTL_S) or TOKEN_TTL_S),
    )
    args = ap.parse_args()
    run_dir: Path = args.run_dir.resolve()
    shutil.rmtree(run_dir / "kafka", ignore_errors=True)
    signal.signal(signal.SIGTERM, _interrupt)

    kafka = LocalKafka(data_dir=run_dir / "kafka")
    stack: Stack | None = None
    control: ThreadingHTTPServer | None = None
    try:
        kafka.start()
        shift = _free_shift()
        gateway = f"http://127.0.0.1:{port_of('gateway', port_shift=shift)}"
        idp = LocalIdp(
            package_dir=ROOT / "idp",
            run_dir=run_dir / "idp",
            port=_browser_port(),
            ui_origins=[gateway],
            access_token_ttl_s=args.token_ttl,
        )
        services = local_stack(
            app="targets",
            bootstrap_servers=kafka.bootstrap_servers,
            log_dir=run_dir / "logs",
            port_shift=shift,
            instance_prefix="e2e-",
            cwd=ROOT,
            extra_env={
                "MYKO_UI_DIST": str(ROOT / "ui" / "dist"),
                "MYKO_GATEWAY_LIVE_HEARTBEAT_MS": "2000",
                **idp.service_env(),
            },
        )
        for svc in services:
            if svc.module == catalogue.SAGA.module:
                svc.env.update(idp.saga_env())
        idp.write_config()
        # The identity provider first: the services fetch its keys as they start.
        stack = Stack([idp.process, *services], healthy_timeout_s=HEALTHY_TIMEOUT_S)
        stack.start()
        _Control.stack = stack
        control = ThreadingHTTPServer(("127.0.0.1", 0), _Control)
        threading.Thread(target=control.serve_forever, daemon=True).start()
        ready = {
            "gateway": gateway,
            "control": f"http://127.0.0.1:{control.server_address[1]}",
            "idp": idp.issuer,
            "tokenTtlS": idp.access_token_ttl_s,
            # Service clients the tests seed data with, one per tenant (client credentials).
            "clients": {c.client_id: c.secret for c in idp.clients if c.client_id.startswith("tests-")},
            "services": [s.name for s in services],
            "logs": str(run_dir / "logs"),
        }
        print(json.dumps(ready), flush=True)
        # Block until the test runner closes our stdin (or a signal arrives).
        sys.stdin.read()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if control is not None:
            control.shutdown()
        if stack is not None:
            stack.stop()
        kafka.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
