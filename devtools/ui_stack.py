"""The stack the browser tests drive: Kafka, every service and the gateway, plus a control port.

    python -m devtools.ui_stack [--run-dir .run/e2e]

Started by ui/e2e/global-setup.ts. It picks ports that are free (so a `make run`
may be up beside it), prints one JSON line once everything is healthy:

    {"gateway": "http://127.0.0.1:11080", "control": "http://127.0.0.1:PORT", ...}

and serves POST /restart/<service> on the control port, which the test that
restarts the gateway under an open page uses. It stops everything when it gets
SIGTERM or SIGINT, or when its stdin closes (the test runner died), so a
crashed test run leaves nothing behind.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType

from myko import catalogue
from myko.errors import ConfigError
from myko.local.kafka import LocalKafka
from myko.local.ports import busy_ports
from myko.local.procs import Stack
from myko.local.topology import check_port_shift, local_stack, port_of, ports_of

ROOT = Path(__file__).resolve().parent.parent
FIRST_SHIFT = 3000
SHIFT_STEP = 100
HEALTHY_TIMEOUT_S = 180.0


def _free_shift() -> int:
    for shift in range(FIRST_SHIFT, FIRST_SHIFT + 20 * SHIFT_STEP, SHIFT_STEP):
        try:
            check_port_shift(shift)
        except ConfigError:
            continue  # the browser under test would refuse the gateway's port
        if not busy_ports(p for s in catalogue.SERVICES for p in ports_of(s.name, port_shift=shift)):
            return shift
    raise RuntimeError("no free block of service ports found")


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
        services = local_stack(
            app="targets",
            bootstrap_servers=kafka.bootstrap_servers,
            log_dir=run_dir / "logs",
            port_shift=shift,
            instance_prefix="e2e-",
            cwd=ROOT,
            extra_env={"MYKO_UI_DIST": str(ROOT / "ui" / "dist"), "MYKO_GATEWAY_LIVE_HEARTBEAT_MS": "2000"},
        )
        stack = Stack(services, healthy_timeout_s=HEALTHY_TIMEOUT_S)
        stack.start()
        _Control.stack = stack
        control = ThreadingHTTPServer(("127.0.0.1", 0), _Control)
        threading.Thread(target=control.serve_forever, daemon=True).start()
        ready = {
            "gateway": f"http://127.0.0.1:{port_of('gateway', port_shift=shift)}",
            "control": f"http://127.0.0.1:{control.server_address[1]}",
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
