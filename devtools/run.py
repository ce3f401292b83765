"""`make run`: Kafka plus every Myko service and the gateway, on this machine.

    python -m devtools.run            # 1 Kafka node on 9092, one of each service
    python -m devtools.run --cluster  # 3 Kafka nodes on 19092.., two of each service
    python -m devtools.run --fresh    # wipe the Kafka data under .run/ first
    python -m devtools.run --port-shift 1000  # every port + 1000, beside another stack

With KAFKA_BOOTSTRAP_SERVERS set, that Kafka is used and none is started.
MYKO_* variables are passed to every service (ports and peer addresses are set
here, see devtools/topology.py). Logs go to .run/logs/<name>.log. Ctrl-C or
SIGTERM stops the services (in reverse order), then Kafka. A service that dies
while running is reported and the rest keep running, so a replica can be
killed on purpose to watch the others carry on.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from devtools.kafka_local import LocalKafka
from devtools.procs import ROOT, ServiceExited, ServiceProcess, Stack
from devtools.topology import SERVICES, cluster_stack, local_stack, present

RUN_DIR = ROOT / ".run"
KAFKA_PORT = 9092
CLUSTER_KAFKA_PORT = 19092
CLUSTER_KAFKA_NODES = 3
HEALTHY_TIMEOUT_S = 180.0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM takes the same path as Ctrl-C: unwind through the `finally` below.
    raise KeyboardInterrupt


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


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _port(svc: ServiceProcess) -> int:
    if svc.grpc_port is not None:
        return svc.grpc_port
    assert svc.health_url is not None
    port = urlsplit(svc.health_url).port
    assert port is not None, svc.health_url
    return port


def _summary(
    *,
    bootstrap: str,
    kafka: LocalKafka | None,
    services: Sequence[ServiceProcess],
    log_dir: Path,
) -> str:
    lines = ["", "Myko is running."]
    where = f"local, data in {_rel(kafka.data_dir)}" if kafka else "external, from KAFKA_BOOTSTRAP_SERVERS"
    lines.append(f"  {'kafka':<11} {bootstrap}  ({where})")
    for svc in services:
        if svc.grpc_port is not None:
            lines.append(f"  {svc.name:<11} {svc.address}")
        else:
            lines.append(f"  {svc.name:<11} http://127.0.0.1:{_port(svc)}/  (grpc-web gateway)")
    missing = [k.module for k in SERVICES if not present(k)]
    if missing:
        lines.append(f"  not started (no <package>/__main__.py yet): {', '.join(missing)}")
    gateways = [s for s in services if s.grpc_port is None]
    if gateways:
        lines.append("")
        lines.append("  UI:   " + "  ".join(f"http://127.0.0.1:{_port(g)}/" for g in gateways))
    lines.append(f"  Logs: {_rel(log_dir)}/<name>.log")
    if kafka:
        lines.append(f"        Kafka: {_rel(kafka.data_dir)}/node*/server.log")
    grpc_services = [s for s in services if s.grpc_port is not None]
    if grpc_services:
        grpcurl = ".venv/bin/grpcurl" if (ROOT / ".venv/bin/grpcurl").exists() else "grpcurl"
        first = next((s for s in grpc_services if s.name.startswith("query")), grpc_services[0])
        lines.append(f"  Try:  {grpcurl} -plaintext {first.address} list")
    lines.append("")
    lines.append("Ctrl-C stops everything.")
    return "\n".join(lines)


def _supervise(stack: Stack) -> None:
    """Report services that die, until interrupted."""
    reported: set[str] = set()
    while True:
        for svc in stack.dead():
            if svc.name not in reported:
                reported.add(svc.name)
                print(
                    f"\n!! {svc.name} exited with code {svc.returncode}; see {_rel(svc.log_path)}",
                    file=sys.stderr,
                    flush=True,
                )
        time.sleep(1.0)


def _stop_kafka(kafka: LocalKafka, *, nodes: int) -> None:
    # All nodes at once: stopped one by one, the last node loses the KRaft quorum
    # and its controlled shutdown hangs until the SIGKILL timeout.
    with ThreadPoolExecutor(max_workers=nodes) as pool:
        list(pool.map(kafka.stop_node, range(1, nodes + 1)))
    kafka.stop()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m devtools.run", description="Run Kafka and the Myko services locally."
    )
    ap.add_argument("--cluster", action="store_true", help="3 Kafka nodes and two replicas of each service")
    ap.add_argument("--fresh", action="store_true", help="delete the local Kafka data first")
    ap.add_argument(
        "--run-dir", type=Path, default=None, help="data and logs (default: .run/, or .run/shift-N/)"
    )
    ap.add_argument(
        "--port-shift",
        type=int,
        default=0,
        metavar="N",
        help="add N to every port (Kafka's too), to run beside another stack",
    )
    args = ap.parse_args(argv)

    # A shifted stack must not share Kafka data or logs with the unshifted one.
    default_dir = RUN_DIR / f"shift-{args.port_shift}" if args.port_shift else RUN_DIR
    run_dir: Path = (args.run_dir or default_dir).resolve()
    log_dir = run_dir / "logs"
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    passthrough = {k: v for k, v in os.environ.items() if k.startswith("MYKO_")}
    # Explicit, because a shell starting us in the background leaves SIGINT ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)

    kafka: LocalKafka | None = None
    if not external:
        data_dir = run_dir / ("kafka-cluster" if args.cluster else "kafka")
        if args.fresh:
            shutil.rmtree(data_dir, ignore_errors=True)
        kafka = LocalKafka(
            data_dir=data_dir,
            nodes=CLUSTER_KAFKA_NODES if args.cluster else 1,
            base_port=(CLUSTER_KAFKA_PORT if args.cluster else KAFKA_PORT) + args.port_shift,
        )
    bootstrap = external or (kafka.bootstrap_servers if kafka else "")
    build = cluster_stack if args.cluster else local_stack
    services = build(
        bootstrap_servers=bootstrap, log_dir=log_dir, extra_env=passthrough, port_shift=args.port_shift
    )

    ports = [_port(s) for s in services]
    if kafka:
        ports += [int(a.rsplit(":", 1)[1]) for a in bootstrap.split(",")]
    busy = busy_ports(ports)
    if busy:
        print(
            f"Ports already in use on 127.0.0.1: {', '.join(map(str, busy))}.\n"
            "Is another `make run` (or a test stack) still running? Stop it, or set "
            "KAFKA_BOOTSTRAP_SERVERS to use a Kafka that is already running.",
            file=sys.stderr,
        )
        return 1

    def progress(svc: ServiceProcess, took_s: float) -> None:
        print(f"  {svc.name:<11} healthy at {svc.address} ({took_s:.1f}s)", flush=True)

    stack = Stack(services, healthy_timeout_s=HEALTHY_TIMEOUT_S, on_healthy=progress)
    code = 0
    try:
        if kafka:
            print(f"Starting Kafka ({len(bootstrap.split(','))} node(s)) on {bootstrap} ...", flush=True)
            kafka.start()
        print(f"Starting {len(services)} service(s); logs in {_rel(log_dir)}/ ...", flush=True)
        stack.start()
        print(_summary(bootstrap=bootstrap, kafka=kafka, services=services, log_dir=log_dir), flush=True)
        _supervise(stack)
    except KeyboardInterrupt:
        pass
    except (ServiceExited, TimeoutError, RuntimeError, OSError) as e:
        print(f"\nStartup failed: {e}", file=sys.stderr)
        code = 1
    finally:
        # A second Ctrl-C must not cut the cleanup short and orphan processes;
        # every stop below is bounded in time.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("\nStopping services ...", flush=True)
        stack.stop()
        if kafka:
            print("Stopping Kafka ...", flush=True)
            _stop_kafka(kafka, nodes=len(bootstrap.split(",")))
        print("Stopped.", flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
