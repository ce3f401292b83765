"""`make run-cluster`'s topology under faults: a broker and one replica of every service die.

The same processes `make run-cluster` starts (3 Kafka nodes, two replicas of
each service, myko/local/topology.py) run on free ports, secured the same way
(myko/local/security.py): each Kafka-using service its own SASL/SCRAM user
with ACLs, deny by default, and mutual TLS between the services. The first
test checks the ACLs from outside: only command_svc's principal may write an
entity topic, the tx log or the lease. The second runs the faults. Several clients send a
steady stream of commands, each with its own tx, retried on UNAVAILABLE,
DEADLINE_EXCEEDED and ABORTED against either command replica until
acknowledged. Watches are open on both query replicas and both report replicas.
Then one Kafka broker (the transaction coordinator of the command writer) is
SIGKILLed and, once commands flow again, the whole replica chain of the command
leader (command, repo, query, report, saga, gateway of that number); last, the
remaining repo replica is SIGKILLed and restarted under the open streams of
its query and report replicas.

Asserted: every acknowledged command is in the final state and none applied
twice (exact hit counts; one record per tx on the topics); every emission of
every Watch lies between what was acknowledged below its watermark and what was
issued at all, and never goes backwards (a stream may end with UNAVAILABLE and
be reopened, with `at_least` = the last watermark it showed); at the end every
Watch shows exactly the final state. docs/running-locally.md has the numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import grpc
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    KafkaConnectionError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)
from cluster_ledger import Ledger, client_loop, covers, positions
from kafka_inspect import produce, read_topic
from myko_client import pack, unpack
from targets.v1 import commands_pb2, entities_pb2, queries_pb2, reports_pb2

from myko.catalogue import SERVICES
from myko.errors import ConfigError
from myko.events import H_TX
from myko.leader import LEASE_TOPIC
from myko.local.kafka import LocalKafka
from myko.local.ports import busy_ports
from myko.local.procs import ServiceProcess
from myko.local.security import KAFKA_USERS, cluster_security, grant_access
from myko.local.topology import all_ports, check_port_shift, cluster_stack
from myko.settings import KafkaSettings
from myko.topics import TX_LOG, TopicSpec, ensure_topics
from myko.v1 import command_pb2, item_pb2, query_pb2, report_pb2

pytestmark = [pytest.mark.kafka, pytest.mark.cluster, pytest.mark.timeout(300)]

Target = entities_pb2.Target

RETRIABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED}
# A stream may end like this when its server or that server's repo goes away.
REOPENABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
ATTEMPT_TIMEOUT_S = 5.0
COMMAND_BOUND_S = 60.0  # an unacknowledged command after this long fails the test
INITIAL_TARGETS = 6
CLIENTS = 4
LOAD_BEFORE_FAULTS_S = 4.0
# After commands flow again following a fault, before the next step.
LOAD_BETWEEN_S = 4.0
RECOVERY_BOUND_S = 45.0
SETTLE_S = 30.0


# -- the stack ---------------------------------------------------------------------------------


@dataclass
class Cluster:
    kafka: LocalKafka
    services: dict[str, ServiceProcess]
    prefix: str

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap_servers

    @property
    def admin(self) -> dict[str, object]:
        """aiokafka connection arguments of the cluster's admin (a super user)."""
        return self.kafka.client_args()

    def addr(self, name: str) -> str:
        return self.services[name].address

    def topic(self, name: str) -> str:
        return self.prefix + name


def _free_shift(kafka_ports: list[int]) -> int:
    """A port shift whose every service port is free (and clear of Kafka's)."""
    rng = random.Random()
    for _ in range(50):
        shift = rng.randrange(2000, 12000, 10)
        try:
            check_port_shift(shift, replicas=2)
        except ConfigError:
            continue  # a gateway on a port browsers refuse
        ports = all_ports(replicas=2, port_shift=shift)
        if not busy_ports(ports) and not set(ports) & set(kafka_ports):
            return shift
    raise RuntimeError("no free port range for the cluster's services")


def _start_in_waves(services: list[ServiceProcess]) -> None:
    """Both replicas of a service at once (halves the start time), services in topology order."""
    for kind in SERVICES:
        wave = [s for s in services if s.module == kind.module]
        for svc in wave:
            svc.start()
        for svc in wave:
            svc.wait_healthy(timeout_s=90)


# One cluster for the module (starting it is most of the time): the ACL test
# leaves it as it was, the fault test runs last and kills parts of it.
@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp_path = tmp_path_factory.mktemp("cluster")
    kafka = LocalKafka(data_dir=tmp_path / "kafka", nodes=3, heap_mb=512, sasl_users=KAFKA_USERS)
    prefix = f"f{uuid.uuid4().hex[:8]}."
    services: list[ServiceProcess] = []
    try:
        began = time.monotonic()
        kafka.start()
        print(f"kafka (3 nodes, SASL) ready in {time.monotonic() - began:.1f}s", flush=True)
        grant_access(kafka, app="targets", extra_env={"MYKO_TOPIC_PREFIX": prefix})
        kafka_ports = [int(a.rsplit(":", 1)[1]) for a in kafka.bootstrap_servers.split(",")]
        services = cluster_stack(
            app="targets",
            bootstrap_servers=kafka.bootstrap_servers,
            log_dir=tmp_path / "logs",
            extra_env={"MYKO_TOPIC_PREFIX": prefix},
            port_shift=_free_shift(kafka_ports),
            instance_prefix=prefix,
            security=cluster_security(kafka, tmp_path / "pki"),
        )
        began = time.monotonic()
        _start_in_waves(services)
        print(f"{len(services)} services healthy in {time.monotonic() - began:.1f}s", flush=True)
        yield Cluster(kafka, {s.name: s for s in services}, prefix)
    finally:
        for svc in reversed(services):
            svc.stop(timeout_s=5)
        kafka.stop()


async def _leader_replica(cluster: Cluster) -> int:
    """Which command replica holds the lease: the address it last announced on the lease topic.

    With TLS the replicas announce their internal (mTLS) port, where followers forward to.
    """
    records = await read_topic(cluster.bootstrap, cluster.topic(LEASE_TOPIC), client_args=cluster.admin)
    addr = records[-1].value.decode()
    (n,) = (
        int(name.rsplit("-", 1)[1])
        for name, svc in cluster.services.items()
        if svc.internal_port is not None and addr == f"127.0.0.1:{svc.internal_port}"
    )
    return n


async def _transaction_coordinator(cluster: Cluster) -> int:
    admin = AIOKafkaAdminClient(**cluster.admin)
    await admin.start()
    try:
        return int(await admin.find_coordinator(f"myko-command-{cluster.prefix}leader", 1))
    finally:
        await admin.close()


# -- clients -----------------------------------------------------------------------------------


@dataclass
class Acks:
    """When commands were first sent and acknowledged: recovery times come from these."""

    sent_acked: list[tuple[float, float]] = field(default_factory=list)
    retries: int = 0

    def first_after(self, t: float) -> float | None:
        """When the first command sent after `t` was acknowledged (an answer from the
        tx log, or to a commit already under way, proves nothing about recovery)."""
        return min((acked for sent, acked in self.sent_acked if sent > t), default=None)

    def recovery_s(self, t: float) -> float:
        first = self.first_after(t)
        return float("nan") if first is None else first - t

    async def wait_after(self, t: float, timeout_s: float, clients: list[asyncio.Task[int]]) -> None:
        """Until a command sent after `t` is acknowledged: the cluster accepts writes again."""
        async with asyncio.timeout(timeout_s):
            while self.first_after(t) is None:
                for task in clients:
                    if task.done():
                        task.result()  # a client's failure is the test's, at once
                await asyncio.sleep(0.05)


class CommandClient:
    """Sends one command at a time; retries the same tx against either replica until acknowledged."""

    def __init__(self, channels: list[grpc.aio.Channel], first: int, acks: Acks) -> None:
        self._calls = [
            ch.unary_unary(
                "/myko.v1.CommandBus/Execute",
                request_serializer=command_pb2.CommandRequest.SerializeToString,
                response_deserializer=command_pb2.CommandResult.FromString,
            )
            for ch in channels
        ]
        self._next = first
        self._acks = acks

    async def execute(self, command: object, tx: str) -> command_pb2.CommandResult:
        request = command_pb2.CommandRequest(tx=tx, command=pack(command))  # type: ignore[arg-type]
        sent = time.monotonic()
        deadline = sent + COMMAND_BOUND_S
        delay = 0.05
        while True:
            call = self._calls[self._next % len(self._calls)]
            try:
                result: command_pb2.CommandResult = await call(request, timeout=ATTEMPT_TIMEOUT_S)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRIABLE:
                    raise AssertionError(f"tx {tx}: {exc.code().name} {exc.details()}") from None
                if time.monotonic() > deadline:
                    raise AssertionError(f"tx {tx} not acknowledged within {COMMAND_BOUND_S}s") from None
                self._acks.retries += 1
                self._next += 1  # the other replica next
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(1.0, delay * 2)
                continue
            self._acks.sent_acked.append((sent, time.monotonic()))
            assert result.tx == tx
            return result


# -- watches -----------------------------------------------------------------------------------


class Watcher:
    """One live Watch, reopened on the other replica when it ends, checking every emission."""

    def __init__(self, name: str, kind: str, channels: list[grpc.aio.Channel], ledger: Ledger) -> None:
        self.name = name
        self.kind = kind
        self._channels = channels
        self._ledger = ledger
        self.errors: list[str] = []
        self.emissions = 0
        self.reopens: list[tuple[float, float | None]] = []  # (ended at, first emission after)
        self.old_labels = 0  # first emissions after a reopen labelled below their at_least
        # The first open is fenced on the set-up writes (read-your-writes): a
        # replica that has not read them yet waits instead of answering without them.
        self.last_wm: dict[tuple[str, int], int] = dict(ledger.fence)
        self.last_targets: dict[str, Target] = {}
        self.last_total = -1

    def _open(self, i: int) -> grpc.aio.UnaryStreamCall[object, object]:
        at_least = item_pb2.Watermark(
            positions=[item_pb2.Offset(topic=t, partition=p, offset=o) for (t, p), o in self.last_wm.items()]
        )
        ch = self._channels[i % len(self._channels)]
        if self.kind == "query":
            return ch.unary_stream(
                "/myko.v1.QueryBus/Watch",
                request_serializer=query_pb2.QueryRequest.SerializeToString,
                response_deserializer=query_pb2.QueryResult.FromString,
            )(query_pb2.QueryRequest(query=pack(queries_pb2.AllTargets()), at_least=at_least))
        return ch.unary_stream(
            "/myko.v1.ReportBus/Watch",
            request_serializer=report_pb2.ReportRequest.SerializeToString,
            response_deserializer=report_pb2.ReportResult.FromString,
        )(report_pb2.ReportRequest(report=pack(reports_pb2.TargetCountsByStatus()), at_least=at_least))

    async def run(self) -> None:
        i = 0
        delay = 0.05
        while True:
            call = self._open(i)
            try:
                async for msg in call:
                    reopened = bool(self.reopens) and self.reopens[-1][1] is None
                    if reopened:
                        self.reopens[-1] = (self.reopens[-1][0], time.monotonic())
                    self._check(msg, reopened=reopened)
                    delay = 0.05
                code, details = grpc.StatusCode.OK, "stream ended"
            except grpc.aio.AioRpcError as exc:
                code, details = exc.code(), exc.details() or ""
            if code not in REOPENABLE:
                self.errors.append(f"stream ended with {code.name}: {details}")
                return
            if not self.reopens or self.reopens[-1][1] is not None:
                self.reopens.append((time.monotonic(), None))
            i += 1
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)

    def _check(self, msg: object, *, reopened: bool) -> None:
        self.emissions += 1
        wm = positions(msg.watermark)  # type: ignore[attr-defined]
        back = [tp for tp, off in self.last_wm.items() if wm.get(tp, 0) < off]
        if back:
            # Also after a reopen: opened with at_least = last_wm, a new subscriber
            # to a shared evaluation gets its payload restamped with where the
            # replica is now (myko/live.py attach), never an older watermark.
            if reopened:
                self.old_labels += 1
            self._wrong(f"watermark went back on {back} (reopened={reopened})")
        if isinstance(msg, query_pb2.QueryResult):
            targets = [unpack(a, Target) for a in msg.items]
            for problem in self._ledger.judge_targets(targets, wm):
                self._wrong(problem)
            now = {t.item.id: t for t in targets}
            for tid, before in self.last_targets.items():
                after = now.get(tid)
                if after is None:
                    self._wrong(f"{before.name} disappeared")
                elif after.hit_count < before.hit_count:
                    self._wrong(f"{before.name}: hit_count went down {before.hit_count} -> {after.hit_count}")
            self.last_targets = now
        else:
            assert isinstance(msg, report_pb2.ReportResult)
            value = unpack(msg.value, reports_pb2.StatusCounts)
            for problem in self._ledger.judge_total(value.total, wm):
                self._wrong(problem)
            if value.total < self.last_total:
                self._wrong(f"total went down {self.last_total} -> {value.total}")
            active = sum(c.count for c in value.counts if c.status == entities_pb2.TARGET_STATUS_ACTIVE)
            if active != value.total:
                self._wrong(f"{active} active of {value.total}")
            self.last_total = value.total
        self.last_wm = {**self.last_wm, **wm}

    def _wrong(self, problem: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(f"emission {self.emissions}: {problem}")

    def shows(self, final: dict[str, Target]) -> bool:
        """Its last emission is the final state.

        A report emits only when its value changes (hits do not change a count),
        so its last emission may rightly be older than the last write; a
        never-decreasing total equal to the final one is the final state. Every
        Target write changes AllTargets, so a query's last emission must also
        have read past every acknowledged Target write.
        """
        if self.kind == "report":
            return self.last_total == len(final)
        if not covers(self.last_wm, _watermark(self._target_fence())):
            return False
        return {k: (t.name, t.hit_count) for k, t in self.last_targets.items()} == {
            k: (t.name, t.hit_count) for k, t in final.items()
        }

    def _target_fence(self) -> dict[tuple[str, int], int]:
        return {tp: off for tp, off in self._ledger.fence.items() if tp[0].endswith(".targets.v1.Target")}

    def lag(self, final: dict[str, Target]) -> str:
        """Why `shows(final)` is false, for the failure message."""
        behind = {tp: (self.last_wm.get(tp, 0), off) for tp, off in self._target_fence().items()}
        behind = {tp: v for tp, v in behind.items() if v[0] < v[1]}
        if self.kind == "report":
            return f"total {self.last_total} != {len(final)}; behind the fence at {behind}"
        diff = {
            k: (self.last_targets.get(k, Target()).hit_count, final.get(k, Target()).hit_count)
            for k in {*self.last_targets, *final}
            if (k in self.last_targets) != (k in final)
            or self.last_targets[k].hit_count != final[k].hit_count
        }
        return f"differs on {dict(list(diff.items())[:5])}; behind the fence at {behind}"


def _watermark(fence: dict[tuple[str, int], int]) -> item_pb2.Watermark:
    return item_pb2.Watermark(
        positions=[item_pb2.Offset(topic=t, partition=p, offset=o) for (t, p), o in fence.items()]
    )


@contextlib.asynccontextmanager
async def _channels(cluster: Cluster) -> AsyncIterator[dict[str, grpc.aio.Channel]]:
    names = [n for n in cluster.services if n.split("-")[0] in ("command", "query", "report")]
    chans = {n: grpc.aio.insecure_channel(cluster.addr(n)) for n in names}
    try:
        yield chans
    finally:
        for ch in chans.values():
            await ch.close(None)


async def _final_state(
    query: grpc.aio.Channel, ledger: Ledger, timeout_s: float
) -> tuple[dict[str, Target], list[str]]:
    """The state at the acknowledged fence, once the sagas' perimeter targets are there too."""
    get = query.unary_unary(
        "/myko.v1.QueryBus/Get",
        request_serializer=query_pb2.QueryRequest.SerializeToString,
        response_deserializer=query_pb2.QueryResult.FromString,
    )
    deadline = time.monotonic() + timeout_s
    while True:
        result = await get(
            query_pb2.QueryRequest(query=pack(queries_pb2.AllTargets()), at_least=ledger.fence_proto),
            timeout=15,
        )
        targets = [unpack(a, Target) for a in result.items]
        wrong = ledger.judge_final(targets)
        if not wrong or time.monotonic() > deadline:
            return {t.item.id: t for t in targets}, wrong
        await asyncio.sleep(0.2)


# -- the tests ---------------------------------------------------------------------------------


def _tombstone(tx: str) -> tuple[bytes, None, list[tuple[str, bytes | None]]]:
    """A delete of an id nobody has: harmless to the state, yet a write like any other."""
    return f"acl-probe-{uuid.uuid4().hex[:8]}".encode(), None, [(H_TX, tx.encode())]


async def test_only_command_svc_may_write_entity_topics_the_tx_log_and_the_lease(cluster: Cluster) -> None:
    entity, tx_log, lease = (cluster.topic(t) for t in ("targets.v1.Target", TX_LOG, LEASE_TOPIC))
    for user in ("repo", "saga"):
        for topic in (entity, tx_log, lease):
            with pytest.raises(TopicAuthorizationFailedError):
                await produce(
                    cluster.bootstrap,
                    topic,
                    0,
                    [_tombstone(str(uuid.uuid4()))],
                    transactional=False,
                    client_args=cluster.kafka.client_args(user),
                )
    # Nor may another principal take over the command writer's transactional id
    # (which would fence the leader).
    with pytest.raises(TransactionalIdAuthorizationFailed):
        await produce(
            cluster.bootstrap,
            entity,
            0,
            [_tombstone(str(uuid.uuid4()))],
            transactional=True,
            transactional_id=f"myko-command-{cluster.prefix}leader",
            client_args=cluster.kafka.client_args("repo"),
        )
    # Without credentials the brokers do not even answer; with a wrong password a
    # service stops at start, saying who was refused.
    with pytest.raises(KafkaConnectionError):
        await produce(cluster.bootstrap, entity, 0, [_tombstone(str(uuid.uuid4()))], transactional=False)
    wrong = KafkaSettings.from_env({**cluster.kafka.client_env("repo"), "MYKO_KAFKA_PASSWORD": "not-it"})
    with pytest.raises(ConfigError, match="refused User:repo"):
        await ensure_topics(wrong, [TopicSpec(entity, 3)], timeout_s=30)
    # command_svc's principal may.
    [offset] = await produce(
        cluster.bootstrap,
        entity,
        0,
        [_tombstone(str(uuid.uuid4()))],
        transactional=False,
        client_args=cluster.kafka.client_args("command"),
    )
    assert offset >= 0
    # The services that need no Kafka are given none: no address, no credentials.
    for name, svc in cluster.services.items():
        kafka_vars = sorted(k for k in svc.env if k.startswith(("KAFKA_", "MYKO_KAFKA_")))
        if name.split("-")[0] in KAFKA_USERS:
            assert svc.env["MYKO_KAFKA_USERNAME"] == name.split("-")[0]
        else:
            assert not kafka_vars, f"{name} has Kafka settings {kafka_vars}"


async def test_broker_and_one_replica_of_each_service_die_under_load(cluster: Cluster) -> None:
    t0 = time.monotonic()
    ledger = Ledger()
    acks = Acks()
    async with _channels(cluster) as ch:
        commands = [ch["command-1"], ch["command-2"]]
        setup = CommandClient(commands, 0, acks)
        for i in range(INITIAL_TARGETS):
            tx = str(uuid.uuid4())
            ledger.ack_initial(await setup.execute(commands_pb2.SetTarget(name=f"hot-{i}"), tx), f"hot-{i}")
        targets = sorted(ledger.initial)

        watchers = [
            Watcher("query-1", "query", [ch["query-1"], ch["query-2"]], ledger),
            Watcher("query-2", "query", [ch["query-2"], ch["query-1"]], ledger),
            Watcher("report-1", "report", [ch["report-1"], ch["report-2"]], ledger),
            Watcher("report-2", "report", [ch["report-2"], ch["report-1"]], ledger),
        ]
        watch_tasks = [asyncio.create_task(w.run(), name=w.name) for w in watchers]
        stop = asyncio.Event()
        clients = [
            asyncio.create_task(
                client_loop(k, CommandClient(commands, k, acks), ledger, targets, stop, pause_s=0.02),
                name=f"client-{k}",
            )
            for k in range(CLIENTS)
        ]
        try:
            await asyncio.sleep(LOAD_BEFORE_FAULTS_S)
            broker = await _transaction_coordinator(cluster)
            t_broker = time.monotonic()
            await asyncio.to_thread(cluster.kafka.stop_node, broker, kill=True)
            print(f"{t_broker - t0:5.1f}s SIGKILL kafka node {broker} (transaction coordinator)", flush=True)
            await acks.wait_after(t_broker, RECOVERY_BOUND_S, clients)
            await asyncio.sleep(LOAD_BETWEEN_S)

            leader = await _leader_replica(cluster)
            t_replicas = time.monotonic()
            # The leader's whole chain, so replica (3 - leader) of everything stays whole.
            doomed = [f"{kind.name}-{leader}" for kind in SERVICES]
            for name in doomed:
                await asyncio.to_thread(cluster.services[name].kill)
            print(f"{t_replicas - t0:5.1f}s SIGKILL {', '.join(doomed)} (command-{leader} led)", flush=True)
            await acks.wait_after(t_replicas, RECOVERY_BOUND_S, clients)
            await asyncio.sleep(LOAD_BETWEEN_S)

            # The last repo crashes and is restarted: the surviving query and report
            # replicas keep their open streams and must resync without going back.
            survivor = 3 - leader
            repo = cluster.services[f"repo-{survivor}"]
            t_repo = time.monotonic()
            await asyncio.to_thread(repo.kill)
            await asyncio.to_thread(repo.start)
            await asyncio.to_thread(repo.wait_healthy, timeout_s=RECOVERY_BOUND_S)
            repo_back = time.monotonic()
            print(
                f"{t_repo - t0:5.1f}s SIGKILL {repo.name}, restarted: healthy after {repo_back - t_repo:.1f}s"
            )
            await asyncio.sleep(LOAD_BETWEEN_S)

            stop.set()
            async with asyncio.timeout(COMMAND_BOUND_S + 10):
                sent = await asyncio.gather(*clients)
            t_end = time.monotonic()

            final, wrong = await _final_state(ch[f"query-{survivor}"], ledger, SETTLE_S)
            deadline = time.monotonic() + SETTLE_S
            while not all(w.shows(final) for w in watchers) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            for task in [*clients, *watch_tasks]:
                task.cancel()
            await asyncio.gather(*clients, *watch_tasks, return_exceptions=True)

    # Each tx's events appear once on the topics (read_committed: what readers see).
    records = await read_topic(
        cluster.bootstrap, cluster.topic("targets.v1.Target"), timeout_s=30, client_args=cluster.admin
    )
    per_tx = Counter(dict(r.headers)[H_TX].decode() for r in records)
    tx_log = Counter(
        r.key.decode()
        for r in await read_topic(cluster.bootstrap, cluster.topic(TX_LOG), client_args=cluster.admin)
    )

    print(
        f"{sum(sent)} commands acknowledged by {CLIENTS} clients in {t_end - t0:.1f}s "
        f"({acks.retries} retried attempts); commands sent after a fault were first acknowledged "
        f"{acks.recovery_s(t_broker):.1f}s after the broker kill, "
        f"{acks.recovery_s(t_replicas):.1f}s after the replica kills",
        flush=True,
    )
    for w in watchers:
        gaps = ", ".join(f"{(b or t_end) - a:.1f}s" for a, b in w.reopens) or "none"
        print(
            f"  watch {w.name}: {w.emissions} emissions, reopened {len(w.reopens)}x (gaps {gaps}), "
            f"{w.old_labels} first emission(s) labelled below at_least",
            flush=True,
        )

    assert not wrong, f"final state wrong: {wrong[:10]}"
    for w in watchers:
        assert not w.errors, f"watch {w.name}: {w.errors}"
    for w in watchers:
        assert w.shows(final), f"watch {w.name} never showed the final state: {w.lag(final)}"
    doubled = {tx: n for tx, n in per_tx.items() if n > 1}
    assert not doubled, f"txs applied more than once on the Target topic: {doubled}"
    missing = {tx for tx in ledger.acked_txs if tx not in tx_log}
    assert not missing, f"acknowledged txs absent from the tx log: {sorted(missing)[:5]}"
    assert not {tx: n for tx, n in tx_log.items() if n > 1}, "a tx recorded twice in the tx log"
    lost = {tx for tx in ledger.target_txs if per_tx[tx] != 1}
    assert not lost, f"acknowledged txs without their one Target event: {sorted(lost)[:5]}"
    assert all(w.emissions > 0 for w in watchers)
    assert {s.name for s in cluster.services.values() if not s.running} == set(doomed)
    assert repo.running
