"""`myko run` (and `make run`): Kafka plus every Myko service and the gateway, on this machine.

    myko run                     # 1 Kafka node on 9092, one of each service
    myko run --cluster           # 3 Kafka nodes on 19092.., two of each service
    myko run --fresh             # wipe the Kafka data under .run/ first
    myko run --port-shift 1000   # every port + 1000, beside another stack
    myko run --prometheus        # and a Prometheus (Debian's package) scraping every service
    myko run --idp idp           # also the local identity provider (idp/, npm's oidc-provider)

With KAFKA_BOOTSTRAP_SERVERS set (or --no-kafka), that Kafka is used and none is
started. --cluster runs secured (myko/local/security.py): its Kafka takes each
service as its own SASL/SCRAM user with ACLs, and the services call each other
over mutual TLS with certificates from a CA in <run dir>/pki/. Authentication:
with --idp the local identity provider starts first (myko/local/idp.py) and
every service verifies its tokens; with MYKO_OIDC_ISSUER (and MYKO_OIDC_AUDIENCE)
set, the services verify that issuer's tokens; with neither, the services run
open (MYKO_AUTH_DISABLED=true) and the summary says so. MYKO_* variables are passed to every service (ports and peer addresses
are set here, see myko/local/topology.py). Logs go to <run dir>/logs/<name>.log.
Ctrl-C or SIGTERM stops the services (in reverse order), then Kafka. A service
that dies while running is reported and the rest keep running, so a replica can
be killed on purpose to watch the others carry on.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from myko import catalogue
from myko.errors import ConfigError
from myko.local.idp import DEFAULT_ACCESS_TOKEN_TTL_S, DEFAULT_PORT, LocalIdp, describe
from myko.local.kafka import LocalKafka
from myko.local.ports import busy_ports, check_browser_ports
from myko.local.procs import ServiceExited, ServiceProcess, Stack
from myko.local.prometheus import (
    PROMETHEUS_PORT,
    LocalPrometheus,
    find_prometheus,
    prometheus_config,
    targets_of,
)
from myko.local.security import KAFKA_USERS, cluster_security, grant_access
from myko.local.topology import StackSecurity, cluster_stack, local_stack, port_of

KAFKA_PORT = 9092
CLUSTER_KAFKA_PORT = 19092
CLUSTER_KAFKA_NODES = 3
HEALTHY_TIMEOUT_S = 180.0
# cluster_stack's replicas of each service.
CLUSTER_REPLICAS = 2
# Where `npm run dev` (Vite) serves a UI, which may sign in too.
VITE_DEV_PORT = 5173


@dataclass(frozen=True, kw_only=True)
class LaunchOptions:
    """What `myko run` starts, decided once from its arguments and environment."""

    app: str  # MYKO_APP: the module exposing `app: myko.App`
    run_dir: Path  # Kafka data and logs
    project_dir: Path | None = None  # services start here, so `app` imports from it
    ui_dist: Path | None = None  # the built UI the gateway serves, when there is one
    cluster: bool = False
    fresh: bool = False
    port_shift: int = 0
    # An external Kafka (KAFKA_BOOTSTRAP_SERVERS): none is started.
    kafka: str = ""
    # MYKO_* from the caller's environment, passed to every service.
    passthrough: Mapping[str, str] | None = None
    # Also start a Prometheus scraping every service (myko/local/prometheus.py).
    prometheus: bool = False
    # The local identity provider's npm package (idp/, with server.mjs): started when given.
    idp_package: Path | None = None
    access_token_ttl_s: int = DEFAULT_ACCESS_TOKEN_TTL_S


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM takes the same path as Ctrl-C: unwind through the `finally` below.
    raise KeyboardInterrupt


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


def _auth_summary(options: LaunchOptions, idp: LocalIdp | None) -> list[str]:
    env = options.passthrough or {}
    if idp is not None:
        local_myko = Path(sys.executable).parent / "myko"
        myko = _rel(local_myko) if local_myko.exists() else "myko"
        return [
            *describe(idp),
            f"  A token for grpcurl: TOKEN=$({myko} token alice --run-dir {_rel(options.run_dir)})",
            '                       grpcurl -plaintext -H "authorization: Bearer $TOKEN" ...',
        ]
    if env.get("MYKO_OIDC_ISSUER", "").strip():
        return [f"  Auth: tokens from {env['MYKO_OIDC_ISSUER'].strip()}"]
    return ["  Auth: OFF (MYKO_AUTH_DISABLED=true): anyone who reaches a port may do anything"]


def _local_idp(options: LaunchOptions, run_dir: Path) -> LocalIdp | None:
    """The local identity provider to start, or None: not asked for, an issuer given, or auth off.

    Without one and without MYKO_OIDC_ISSUER the topology runs the services open
    (MYKO_AUTH_DISABLED=true, myko/local/topology.py).
    """
    env = options.passthrough or {}
    external = bool(env.get("MYKO_OIDC_ISSUER", "").strip())
    disabled = env.get("MYKO_AUTH_DISABLED", "").strip().lower() in ("true", "1", "yes")
    if options.idp_package is None or external or disabled:
        return None
    replicas = CLUSTER_REPLICAS if options.cluster else 1
    gateways = [port_of("gateway", replica=n, port_shift=options.port_shift) for n in range(1, replicas + 1)]
    # The UI as the gateway serves it, by either loopback name, and as `npm run dev` serves it.
    origins = [
        f"http://{host}:{port}" for port in [*gateways, VITE_DEV_PORT] for host in ("127.0.0.1", "localhost")
    ]
    port = DEFAULT_PORT + options.port_shift
    check_browser_ports([port], what="the identity provider's port")
    return LocalIdp(
        package_dir=options.idp_package,
        run_dir=run_dir / "idp",
        port=port,
        ui_origins=origins,
        access_token_ttl_s=options.access_token_ttl_s,
    )


def _summary(
    *,
    options: LaunchOptions,
    bootstrap: str,
    kafka: LocalKafka | None,
    services: Sequence[ServiceProcess],
    log_dir: Path,
    security: StackSecurity,
    idp: LocalIdp | None,
    prometheus: LocalPrometheus | None = None,
) -> str:
    lines = ["", f"Myko is running {options.app}."]
    where = f"local, data in {_rel(kafka.data_dir)}" if kafka else "external, from KAFKA_BOOTSTRAP_SERVERS"
    if kafka is not None and kafka.secured:
        where += (
            f"; SASL/SCRAM users {', '.join(KAFKA_USERS)} with ACLs, passwords in {_rel(kafka.data_dir)}/sasl"
        )
    lines.append(f"  {'kafka':<11} {bootstrap}  ({where})")
    if idp is not None:
        lines.append(f"  {'idp':<11} {idp.issuer}  (OpenID provider, log in {_rel(idp.process.log_path)})")
    for svc in services:
        if svc.grpc_port is not None:
            internal = f"  (internal, mTLS: 127.0.0.1:{svc.internal_port})" if svc.internal_port else ""
            spec = next((spec for spec in catalogue.SERVICES if spec.module == svc.module), None)
            if security.tls and spec is not None and spec.internal:
                internal = f"  (mTLS only: {', '.join(spec.callers)} certificates)"
            lines.append(f"  {svc.name:<11} {svc.address}{internal}")
        else:
            lines.append(f"  {svc.name:<11} http://127.0.0.1:{_port(svc)}/  (grpc-web gateway)")
    gateways = [s for s in services if s.grpc_port is None]
    if gateways:
        lines.append("")
        urls = "  ".join(f"http://127.0.0.1:{_port(g)}/" for g in gateways)
        if options.ui_dist is None:
            lines.append(f"  UI:   none built (no ui/dist); the gateway serves the API at {urls}")
        else:
            lines.append(f"  UI:   {urls}")
    if security.tls:
        assert security.ca is not None
        lines.append(
            f"  TLS:  services call repo and command's internal ports with certificates from "
            f"{_rel(security.ca.parent)}/ (public ports stay plaintext)"
        )
    if prometheus is not None:
        lines.append(
            f"  Prometheus: {prometheus.url}/  (scrapes every service's /metrics; alerts at {prometheus.url}/alerts)"
        )
    lines.append("")
    lines += _auth_summary(options, idp)
    lines.append("")
    lines.append(f"  Logs: {_rel(log_dir)}/<name>.log")
    if kafka:
        lines.append(f"        Kafka: {_rel(kafka.data_dir)}/node*/server.log")
    grpc_services = [s for s in services if s.grpc_port is not None]
    if grpc_services:
        local_grpcurl = Path(sys.executable).parent / "grpcurl"
        grpcurl = _rel(local_grpcurl) if local_grpcurl.exists() else "grpcurl"
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


def launch(options: LaunchOptions) -> int:
    """Start everything, print the addresses, supervise until Ctrl-C / SIGTERM; the exit code."""
    run_dir = options.run_dir.resolve()
    log_dir = run_dir / "logs"
    extra_env = dict(options.passthrough or {})
    # The checkpoints of repo_svc, command_svc and saga_svc (docs/checkpoints.md), one
    # subdirectory per replica.
    extra_env.setdefault("MYKO_CHECKPOINT_DIR", str(run_dir / "checkpoints"))
    if options.ui_dist is not None:
        extra_env["MYKO_UI_DIST"] = str(options.ui_dist.resolve())
    kafka: LocalKafka | None = None
    if not options.kafka:
        data_dir = run_dir / ("kafka-cluster" if options.cluster else "kafka")
        if options.fresh:
            shutil.rmtree(data_dir, ignore_errors=True)
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        kafka = LocalKafka(
            data_dir=data_dir,
            nodes=CLUSTER_KAFKA_NODES if options.cluster else 1,
            base_port=(CLUSTER_KAFKA_PORT if options.cluster else KAFKA_PORT) + options.port_shift,
            # The cluster runs as production does: each service its own Kafka user.
            sasl_users=KAFKA_USERS if options.cluster else (),
        )
    bootstrap = options.kafka or (kafka.bootstrap_servers if kafka else "")
    build = cluster_stack if options.cluster else local_stack
    try:
        security = cluster_security(kafka, run_dir / "pki") if options.cluster else StackSecurity()
        idp = _local_idp(options, run_dir)
        if idp is not None:
            extra_env.update(idp.service_env())
        services = build(
            app=options.app,
            bootstrap_servers=bootstrap,
            log_dir=log_dir,
            extra_env=extra_env,
            port_shift=options.port_shift,
            cwd=options.project_dir,
            security=security,
        )
    except ConfigError as e:
        print(f"myko run: {e.message}", file=sys.stderr)
        return 2

    ports = [_port(s) for s in services] + [s.internal_port for s in services if s.internal_port]
    ports += [s.metrics_port for s in services if s.metrics_port is not None and s.metrics_port not in ports]
    prometheus: LocalPrometheus | None = None
    if options.prometheus:
        try:
            binary = find_prometheus()
        except ConfigError as e:
            print(f"myko run: {e.message}", file=sys.stderr)
            return 2
        prometheus = LocalPrometheus(
            data_dir=run_dir / "prometheus",
            port=PROMETHEUS_PORT + options.port_shift,
            config=prometheus_config(targets_of(services)),
            binary=binary,
        )
        ports.append(prometheus.port)
    if idp is not None:
        ports.append(idp.port)
        # saga_svc calls command_svc as itself (client credentials), not as a user.
        for svc in services:
            if svc.module == catalogue.SAGA.module:
                svc.env.update(idp.saga_env())
    if kafka:
        ports += [int(a.rsplit(":", 1)[1]) for a in bootstrap.split(",")]
    busy = busy_ports(ports)
    if busy:
        print(
            f"Ports already in use on 127.0.0.1: {', '.join(map(str, busy))}.\n"
            "Is another `myko run` / `make run` (or a test stack) still running? Stop it, pass "
            "--port-shift, or set KAFKA_BOOTSTRAP_SERVERS to use a Kafka that is already running.",
            file=sys.stderr,
        )
        return 1

    # Explicit, because a shell starting us in the background leaves SIGINT ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)

    def progress(svc: ServiceProcess, took_s: float) -> None:
        print(f"  {svc.name:<11} healthy at {svc.address} ({took_s:.1f}s)", flush=True)

    # The identity provider first: services fetch its keys when the first call comes.
    processes = [idp.process, *services] if idp is not None else list(services)
    stack = Stack(processes, healthy_timeout_s=HEALTHY_TIMEOUT_S, on_healthy=progress)
    code = 0
    try:
        if kafka:
            print(f"Starting Kafka ({len(bootstrap.split(','))} node(s)) on {bootstrap} ...", flush=True)
            kafka.start()
            if kafka.secured:
                print("Creating the services' Kafka users and ACLs ...", flush=True)
                grant_access(kafka, app=options.app, extra_env=extra_env, cwd=options.project_dir)
        if idp is not None:
            # Written before the stack starts it (Stack.start runs the bare process).
            idp.write_config()
        print(f"Starting {len(services)} service(s); logs in {_rel(log_dir)}/ ...", flush=True)
        stack.start()
        if prometheus is not None:
            print(f"Starting Prometheus on {prometheus.url} ...", flush=True)
            prometheus.start()
        summary = _summary(
            options=options,
            bootstrap=bootstrap,
            kafka=kafka,
            services=services,
            log_dir=log_dir,
            security=security,
            prometheus=prometheus,
            idp=idp,
        )
        print(summary, flush=True)
        _supervise(stack)
    except KeyboardInterrupt:
        pass
    except (ServiceExited, TimeoutError, RuntimeError, OSError, subprocess.SubprocessError) as e:
        print(f"\nStartup failed: {e}", file=sys.stderr)
        code = 1
    finally:
        # A second Ctrl-C must not cut the cleanup short and orphan processes;
        # every stop below is bounded in time.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if prometheus is not None:
            prometheus.stop()
        print("\nStopping services ...", flush=True)
        stack.stop()
        if kafka:
            print("Stopping Kafka ...", flush=True)
            _stop_kafka(kafka, nodes=len(bootstrap.split(",")))
        print("Stopped.", flush=True)
    return code
