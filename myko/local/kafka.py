"""A real Apache Kafka (KRaft) cluster on 127.0.0.1, resolved from Maven Central.

Used by `myko run`, `make run`, `make run-cluster` and the test fixtures. It
needs `java` (17+) and, the first time, `mvn`: Maven resolves the pom shipped
beside this module (kafka_pom.xml, a copy of this repository's kafka/pom.xml made
by `make gen`) and copies every jar into a directory shared by every checkout
and application on the machine: `~/.cache/myko/kafka/<pom digest>/` (under
`$XDG_CACHE_HOME` when set; `MYKO_KAFKA_JARS` names another). Maven's own
downloads stay in ~/.m2. Storage is formatted fresh in a data directory and
every broker runs as a child JVM.

    with LocalKafka(data_dir=Path("/tmp/k")) as kafka:
        print(kafka.bootstrap_servers)

With `sasl_users` (what `make run-cluster` and the cluster tests use) the
brokers authenticate every client with SASL and authorize it with
StandardAuthorizer, deny by default, configured as a production cluster is
(myko/kafka_access.py, `broker_sasl_properties`): the cluster's own super
users `broker`, `controller` and `admin` log in with PLAIN, their passwords in
the brokers' configuration; each name in `sasl_users` is a service that logs
in with SCRAM-SHA-512, whose user `myko kafka-access` creates (with the
ACLs) once the cluster runs (myko/local/security.py). Every password is
random, kept in <data dir>/sasl/ with the data it belongs to. Without
`sasl_users` every listener is PLAINTEXT on 127.0.0.1, as `make run` uses it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from myko.kafka_access import SCRAM_MECHANISM, broker_sasl_properties
from myko.local.ports import free_port
from myko.settings import KafkaSettings

POM = Path(__file__).resolve().parent / "kafka_pom.xml"
JARS_ENV = "MYKO_KAFKA_JARS"

LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <File name="file" fileName="{log}">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Logger name="kafka" level="INFO"/>
    <Logger name="org.apache.kafka" level="INFO"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="kafka.log.LogCleaner" level="WARN"/>
    <Root level="WARN"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
"""


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def default_jar_dir(env: Mapping[str, str] | None = None) -> Path:
    """MYKO_KAFKA_JARS, else one cache directory per pom, so versions never mix."""
    env = os.environ if env is None else env
    if env.get(JARS_ENV, "").strip():
        return Path(env[JARS_ENV].strip())
    cache = Path(env.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache")
    return cache / "myko" / "kafka" / _pom_digest()[:16]


def resolve_jars(target: Path | None = None) -> Path:
    """Kafka's jars in `target` (default_jar_dir()): fetched with Maven unless already there."""
    target = target or default_jar_dir()
    stamp = target / ".pom-sha256"
    digest = _pom_digest()
    if stamp.exists() and stamp.read_text() == digest:
        return target
    if shutil.which("mvn") is None:
        raise RuntimeError("Maven (mvn) is not on the PATH: it fetches Kafka's jars the first time")
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Maven works on a copy: the installed pom may sit in a read-only site-packages.
    with tempfile.TemporaryDirectory(prefix="myko-kafka-pom-") as work:
        shutil.copyfile(POM, Path(work) / "pom.xml")
        subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-Dstyle.color=never",
                "dependency:copy-dependencies",
                f"-DoutputDirectory={target}",
                "-DincludeScope=runtime",
            ],
            cwd=work,
            check=True,
        )
    stamp.write_text(digest)
    return target


# The cluster's own principals (super users, PLAIN); the services' (SCRAM) are given by the caller.
ADMIN_USER = "admin"
_BROKER_USER = "broker"
_CONTROLLER_USER = "controller"


@dataclass
class _Node:
    node_id: int
    port: int
    controller_port: int
    dir: Path
    proc: subprocess.Popen[bytes] | None = None


class LocalKafka:
    """`nodes` combined broker+controller processes sharing one KRaft quorum."""

    def __init__(
        self,
        *,
        data_dir: Path | None = None,
        nodes: int = 1,
        heap_mb: int = 1024,
        base_port: int | None = None,
        start_timeout_s: float = 90.0,
        jars: Path | None = None,
        sasl_users: Sequence[str] = (),
    ) -> None:
        self._own_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="myko-kafka-"))
        self.heap_mb = heap_mb
        self.start_timeout_s = start_timeout_s
        self._jar_target = jars
        self._jar_dir: Path | None = None
        rf = min(3, nodes)
        self.replication_factor = rf
        reserved = {ADMIN_USER, _BROKER_USER, _CONTROLLER_USER} & set(sasl_users)
        if reserved:
            raise ValueError(f"sasl_users may not include the cluster's own {sorted(reserved)}")
        self.sasl_users = tuple(sasl_users)
        self._nodes = []
        for i in range(nodes):
            port = base_port + 2 * i if base_port else free_port()
            cport = base_port + 2 * i + 1 if base_port else free_port()
            self._nodes.append(_Node(i + 1, port, cport, self.data_dir / f"node{i + 1}"))

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self._nodes)

    @property
    def secured(self) -> bool:
        return bool(self.sasl_users)

    @property
    def _sasl_dir(self) -> Path:
        return self.data_dir / "sasl"

    def password(self, user: str) -> str:
        """`user`'s SCRAM password (made on first use, kept with the data it was formatted into)."""
        if user not in (*self.sasl_users, ADMIN_USER, _BROKER_USER, _CONTROLLER_USER):
            raise KeyError(f"{user!r} is not a user of this cluster")
        path = self._sasl_dir / f"{user}.password"
        if not path.exists():
            self._sasl_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(24))
        return path.read_text().strip()

    def client_env(self, user: str = ADMIN_USER) -> dict[str, str]:
        """The KAFKA_*/MYKO_KAFKA_* settings of a service connecting as `user` (myko/settings.py)."""
        env = {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers}
        if self.secured:
            env |= {
                "MYKO_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "MYKO_KAFKA_SASL_MECHANISM": "PLAIN" if user == ADMIN_USER else SCRAM_MECHANISM,
                "MYKO_KAFKA_USERNAME": user,
                "MYKO_KAFKA_PASSWORD": self.password(user),
            }
        return env

    def access_env(self) -> dict[str, str]:
        """What `myko kafka-access` needs to create the services' users: the admin's login and their passwords."""
        return {
            **self.client_env(ADMIN_USER),
            **{f"MYKO_KAFKA_{user.upper()}_PASSWORD": self.password(user) for user in self.sasl_users},
        }

    def client_args(self, user: str = ADMIN_USER) -> dict[str, Any]:
        """aiokafka connection arguments for `user` (the admin by default: tests, tools)."""
        return KafkaSettings.from_env(self.client_env(user)).client_args()

    def _voters(self) -> str:
        return ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self._nodes)

    def _write_config(self, n: _Node) -> Path:
        n.dir.mkdir(parents=True, exist_ok=True)
        rf = self.replication_factor
        min_isr = 2 if rf >= 3 else 1
        props = {
            "process.roles": "broker,controller",
            "node.id": str(n.node_id),
            "controller.quorum.voters": self._voters(),
            "listeners": f"PLAINTEXT://127.0.0.1:{n.port},CONTROLLER://127.0.0.1:{n.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{n.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            **(self._sasl_config(n) if self.secured else {}),
            "log.dirs": str(n.dir / "data"),
            "num.partitions": "1",
            "default.replication.factor": str(rf),
            "min.insync.replicas": str(min_isr),
            "offsets.topic.replication.factor": str(rf),
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": str(rf),
            "transaction.state.log.min.isr": str(min_isr),
            "transaction.state.log.num.partitions": "3",
            "share.coordinator.state.topic.replication.factor": str(rf),
            "share.coordinator.state.topic.min.isr": str(min_isr),
            "group.initial.rebalance.delay.ms": "0",
            "log.cleaner.dedupe.buffer.size": str(4 * 1024 * 1024),
            "log.cleaner.threads": "1",
            "auto.create.topics.enable": "false",
            "transaction.max.timeout.ms": "900000",
        }
        path = n.dir / "server.properties"
        # It holds the cluster's own passwords when SASL is on.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("".join(f"{k}={v}\n" for k, v in props.items()))
        (n.dir / "log4j2.xml").write_text(LOG4J2_XML.format(log=n.dir / "server.log"))
        return path

    def _sasl_config(self, n: _Node) -> dict[str, str]:
        return {
            "listeners": f"SASL_PLAINTEXT://127.0.0.1:{n.port},CONTROLLER://127.0.0.1:{n.controller_port}",
            "advertised.listeners": f"SASL_PLAINTEXT://127.0.0.1:{n.port}",
            "inter.broker.listener.name": "SASL_PLAINTEXT",
            "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
            **broker_sasl_properties(
                listener="SASL_PLAINTEXT",
                broker_password=self.password(_BROKER_USER),
                admin_password=self.password(ADMIN_USER),
                controller_password=self.password(_CONTROLLER_USER),
            ),
        }

    def _java(self, n: _Node, main: str, *args: str) -> list[str]:
        if self._jar_dir is None:
            self._jar_dir = resolve_jars(self._jar_target)
        cp = os.pathsep.join(str(p) for p in sorted(self._jar_dir.glob("*.jar")))
        return [
            os.environ.get("JAVA", "java"),
            f"-Xms{self.heap_mb // 2}m",
            f"-Xmx{self.heap_mb}m",
            "-XX:+UseG1GC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={n.dir / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={n.dir}",
            "-cp",
            cp,
            main,
            *args,
        ]

    def start(self) -> LocalKafka:
        cluster_id = _base64_uuid()
        for n in self._nodes:
            cfg = self._write_config(n)
            if not (n.dir / "data" / "meta.properties").exists():
                # `--cluster-id=`: a base64 id may start with '-' and would read as an option.
                subprocess.run(
                    self._java(
                        n, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(cfg)
                    ),
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
        for n in self._nodes:
            self.start_node(n.node_id)
        self.wait_ready()
        return self

    def start_node(self, node_id: int) -> None:
        n = self._nodes[node_id - 1]
        if n.proc is not None and n.proc.poll() is None:
            return
        out = open(n.dir / "stdout.log", "ab")  # noqa: SIM115 - owned by the child
        n.proc = subprocess.Popen(
            self._java(n, "kafka.Kafka", str(n.dir / "server.properties")),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop_node(self, node_id: int, *, kill: bool = False, timeout_s: float = 30.0) -> None:
        n = self._nodes[node_id - 1]
        if n.proc is None or n.proc.poll() is not None:
            return
        n.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            n.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            n.proc.kill()
            n.proc.wait(timeout=10)

    def wait_ready(self, node_ids: list[int] | None = None) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        for n in self._nodes:
            if node_ids is not None and n.node_id not in node_ids:
                continue
            while True:
                if n.proc is not None and n.proc.poll() is not None:
                    log = (n.dir / "server.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"kafka node {n.node_id} exited: {log}")
                if _broker_answers(n.port):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"kafka node {n.node_id} not ready in {self.start_timeout_s}s")
                time.sleep(0.2)

    def stop(self) -> None:
        # All at once: stopping a quorum one node at a time leaves the last
        # ones waiting ~30 s for a controller that is already gone.
        for n in self._nodes:
            if n.proc is not None and n.proc.poll() is None:
                n.proc.send_signal(signal.SIGTERM)
        for n in self._nodes:
            self.stop_node(n.node_id)
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _base64_uuid() -> str:
    """A cluster id as Kafka's Uuid.randomUuid() makes them: never starting with "-",
    which `kafka-storage format -t` would read as an option (1 start in 64 failed)."""
    import base64

    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _broker_answers(port: int) -> bool:
    """True once the broker answers an ApiVersions request (not just TCP accept)."""
    # ApiVersions v0 request: size, api_key=18, version=0, correlation_id=1, client_id=""
    body = (18).to_bytes(2, "big") + (0).to_bytes(2, "big") + (1).to_bytes(4, "big") + (0).to_bytes(2, "big")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(len(body).to_bytes(4, "big") + body)
            head = s.recv(4)
            return len(head) == 4
    except OSError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(
        prog="python -m myko.local.kafka", description="Run a local Apache Kafka (KRaft) cluster."
    )
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--base-port", type=int, default=9092)
    ap.add_argument("--resolve-only", action="store_true", help="only fetch the jars")
    ap.add_argument("--jars", type=Path, default=None, help=f"jar directory (default: {default_jar_dir()})")
    args = ap.parse_args()
    if args.resolve_only:
        print(resolve_jars(args.jars))
        return
    kafka = LocalKafka(data_dir=args.data_dir, nodes=args.nodes, base_port=args.base_port, jars=args.jars)
    kafka.start()
    print(f"KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap_servers}", flush=True)
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not stop:
        time.sleep(0.5)
    kafka.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
