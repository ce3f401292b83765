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
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from myko.local.ports import free_port

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
    ) -> None:
        self._own_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="myko-kafka-"))
        self.heap_mb = heap_mb
        self.start_timeout_s = start_timeout_s
        self._jar_target = jars
        self._jar_dir: Path | None = None
        rf = min(3, nodes)
        self.replication_factor = rf
        self._nodes = []
        for i in range(nodes):
            port = base_port + 2 * i if base_port else free_port()
            cport = base_port + 2 * i + 1 if base_port else free_port()
            self._nodes.append(_Node(i + 1, port, cport, self.data_dir / f"node{i + 1}"))

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self._nodes)

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
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (n.dir / "log4j2.xml").write_text(LOG4J2_XML.format(log=n.dir / "server.log"))
        return path

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
                subprocess.run(
                    # --cluster-id=: an id starting with "-" (1 in 64) would read as an option.
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
