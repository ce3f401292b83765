"""Mutual TLS between services and TLS on the public listeners (myko/tls.py, docs/security.md).

Real services on a real broker, each with a certificate from a CA made for the
test (myko/pki.py). RepoService must refuse every caller that is not a
mirroring service with a certificate from that CA; command replicas forward
over their internal port, which only command and saga certificates open; with
MYKO_TLS_PUBLIC the buses and the gateway speak TLS to anyone with the CA.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
import pytest
from grpc_web_client import call
from myko_client import pack
from targets.v1 import commands_pb2, queries_pb2

from devtools import swarm_probe
from myko import Client
from myko.app import App
from myko.catalogue import SERVICES
from myko.client import CHANNEL_OPTIONS
from myko.command_service import CommandService
from myko.errors import ConfigError
from myko.gateway.server import Gateway
from myko.live_kind import LiveKind
from myko.live_service import LiveService
from myko.pki import CertFiles, CertificateAuthority, ensure_service_certs, load_identity
from myko.repo_service import RepoService
from myko.settings import CommandSettings, GatewaySettings, QuerySettings, RepoSettings, TlsSettings
from myko.tls import Transport
from myko.v1 import command_pb2, query_pb2, repo_pb2, system_pb2

pytestmark = pytest.mark.kafka


@dataclass(frozen=True)
class Pki:
    ca: Path
    certs: Mapping[str, CertFiles]
    # Issued by another CA under a name our services trust.
    forged_query: CertFiles

    def env(self, service: str, *, public: bool = False) -> dict[str, str]:
        files = self.certs[service]
        env = {"MYKO_TLS_CERT": str(files.cert), "MYKO_TLS_KEY": str(files.key), "MYKO_TLS_CA": str(self.ca)}
        if public:
            env["MYKO_TLS_PUBLIC"] = "true"
        return env

    def credentials(self, who: str | None, *, ca: Path | None = None) -> grpc.ChannelCredentials:
        """A client's credentials: trusting our CA, presenting `who`'s certificate (None: no certificate)."""
        root = (ca or self.ca).read_bytes()
        if who is None:
            return grpc.ssl_channel_credentials(root_certificates=root)
        files = self.forged_query if who == "forged" else self.certs[who]
        return grpc.ssl_channel_credentials(
            root_certificates=root,
            private_key=files.key.read_bytes(),
            certificate_chain=files.cert.read_bytes(),
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    certs = ensure_service_certs(directory, [s.name for s in SERVICES])
    other = CertificateAuthority.create(directory / "other")
    return Pki(ca=directory / "ca.crt", certs=certs, forged_query=other.issue("query"))


async def _code(call: Awaitable[object]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def _repo_get(addr: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    if credentials is None:
        channel = grpc.aio.insecure_channel(addr)
    else:
        channel = grpc.aio.secure_channel(
            addr, credentials, options=[("grpc.ssl_target_name_override", "repo")]
        )
    async with channel:
        get = channel.unary_unary(
            "/myko.v1.RepoService/Get",
            request_serializer=repo_pb2.RepoGetRequest.SerializeToString,
            response_deserializer=repo_pb2.RepoGetResponse.FromString,
        )
        return await _code(get(repo_pb2.RepoGetRequest(type="targets.v1.Target"), timeout=10))


@pytest.fixture
async def repo(myko_env: dict[str, str], example_app: App, pki: Pki) -> AsyncIterator[RepoService]:
    svc = RepoService(RepoSettings.from_env({**myko_env, **pki.env("repo")}), example_app)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


async def test_repo_service_refuses_callers_without_a_valid_client_certificate(
    repo: RepoService, myko_env: dict[str, str], example_app: App, pki: Pki
) -> None:
    addr = f"127.0.0.1:{repo.grpc.port}"
    # A mirroring service with its own certificate gets through: query_svc becomes ready.
    query = LiveService(
        QuerySettings.from_env({**myko_env, **pki.env("query"), "MYKO_REPO_ADDR": addr}),
        example_app,
        kind=LiveKind.QUERY,
    )
    async with asyncio.timeout(30):
        await query.start()
    await query.stop()
    assert await _repo_get(addr, pki.credentials("query")) == grpc.StatusCode.OK
    assert await _repo_get(addr, pki.credentials("report")) == grpc.StatusCode.OK
    # No TLS, TLS without a certificate, a certificate from another CA: the handshake fails.
    assert await _repo_get(addr, None) == grpc.StatusCode.UNAVAILABLE
    assert await _repo_get(addr, pki.credentials(None)) == grpc.StatusCode.UNAVAILABLE
    assert await _repo_get(addr, pki.credentials("forged")) == grpc.StatusCode.UNAVAILABLE
    # Our CA's certificate for a service that does not mirror the repo: known, not allowed.
    for who in ("gateway", "command", "saga"):
        assert await _repo_get(addr, pki.credentials(who)) == grpc.StatusCode.PERMISSION_DENIED, who
    # And the caller checks the server too: repo_svc is not what another CA vouches for.
    other_ca = pki.forged_query.cert.parent / "ca.crt"
    assert await _repo_get(addr, pki.credentials(None, ca=other_ca)) == grpc.StatusCode.UNAVAILABLE
    # The operator's probe of a secured swarm (devtools/swarm_probe.py) gets in with query's
    # certificate, and only with one.
    as_query = Transport(TlsSettings.from_env(pki.env("query", public=True)))
    report = await asyncio.to_thread(
        swarm_probe.probe_grpc, "repo", "127.0.0.1", repo.grpc.port, 10, as_query
    )
    assert report.healthy and "myko.v1.RepoService" in report.services, report
    plain = Transport(TlsSettings())
    report = await asyncio.to_thread(swarm_probe.probe_grpc, "repo", "127.0.0.1", repo.grpc.port, 10, plain)
    assert not report.healthy and report.detail.startswith("UNAVAILABLE"), report


async def _report_status(addr: str, credentials: grpc.ChannelCredentials, service: str) -> grpc.StatusCode:
    status = system_pb2.ServiceStatus(
        service=service, state=system_pb2.SERVICE_STATE_SERVING, interval_ms=10_000
    )
    status.item.id, status.item.type = f"{service}-tls", "myko.v1.ServiceStatus"
    status.reported_at.FromSeconds(1_800_000_000)
    status.started_at.FromSeconds(1_800_000_000)
    async with grpc.aio.secure_channel(
        addr, credentials, options=[("grpc.ssl_target_name_override", "repo")]
    ) as channel:
        report = channel.unary_unary(
            "/myko.v1.RepoService/ReportStatus",
            request_serializer=repo_pb2.ReportStatusRequest.SerializeToString,
            response_deserializer=repo_pb2.ReportStatusResponse.FromString,
        )
        return await _code(report(repo_pb2.ReportStatusRequest(status=status), timeout=30))


async def test_only_query_and_report_certificates_report_their_own_status_through_repo(
    repo: RepoService, pki: Pki
) -> None:
    addr = f"127.0.0.1:{repo.grpc.port}"
    assert await _report_status(addr, pki.credentials("query"), "query") == grpc.StatusCode.OK
    assert await _report_status(addr, pki.credentials("report"), "report") == grpc.StatusCode.OK
    # A certificate speaks for its own service only, and only the live services need this.
    assert await _report_status(addr, pki.credentials("report"), "query") == grpc.StatusCode.PERMISSION_DENIED
    for who in ("command", "saga", "gateway"):
        code = await _report_status(addr, pki.credentials(who), who)
        assert code == grpc.StatusCode.PERMISSION_DENIED, who
    assert repo.status_relay.written == 2


async def _internal_execute(addr: str, credentials: grpc.ChannelCredentials) -> grpc.StatusCode:
    async with grpc.aio.secure_channel(
        addr, credentials, options=[("grpc.ssl_target_name_override", "command")]
    ) as channel:
        execute = channel.unary_unary(
            "/myko.v1.CommandBus/Execute",
            request_serializer=command_pb2.CommandRequest.SerializeToString,
            response_deserializer=command_pb2.CommandResult.FromString,
        )
        request = command_pb2.CommandRequest(
            tx="00000000-0000-4000-8000-000000000001",
            command=pack(commands_pb2.SetTarget(name="via-internal")),
        )
        return await _code(execute(request, timeout=30))


async def test_command_replicas_forward_over_mutual_tls_and_only_command_and_saga_may_use_it(
    myko_env: dict[str, str], example_app: App, pki: Pki
) -> None:
    env = {**myko_env, **pki.env("command"), "MYKO_COMMAND_INTERNAL_PORT": "0"}
    replicas = [
        CommandService(CommandSettings.from_env({**env, "MYKO_INSTANCE_ID": f"tls-{n}"}), example_app)
        for n in (1, 2)
    ]
    try:
        for svc in replicas:
            await svc.start()
        async with asyncio.timeout(30):
            while not any(svc.bus.running for svc in replicas):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        leader, follower = sorted(replicas, key=lambda s: not s.bus.running)
        internal = leader.grpc.internal_port
        assert internal and internal != leader.grpc.port
        # Followers learn the leader's internal (mTLS) address from the lease.
        assert follower.leader_addr == f"127.0.0.1:{internal}"
        # A public caller (plaintext here) reaches the follower, which forwards over mTLS.
        async with Client(command_addr=f"127.0.0.1:{follower.grpc.port}") as client:
            result = await client.execute(commands_pb2.SetTarget(name="forwarded"))
        assert result.events and result.events[0].type == "targets.v1.Target"
        addr = f"127.0.0.1:{internal}"
        assert await _internal_execute(addr, pki.credentials("saga")) == grpc.StatusCode.OK
        assert await _internal_execute(addr, pki.credentials("repo")) == grpc.StatusCode.PERMISSION_DENIED
        assert await _internal_execute(addr, pki.credentials(None)) == grpc.StatusCode.UNAVAILABLE
        assert await _internal_execute(addr, pki.credentials("forged")) == grpc.StatusCode.UNAVAILABLE
    finally:
        for svc in reversed(replicas):
            await svc.stop()


async def test_public_tls_on_the_buses_and_https_on_the_gateway(
    repo: RepoService, myko_env: dict[str, str], example_app: App, pki: Pki
) -> None:
    query = LiveService(
        QuerySettings.from_env(
            {**myko_env, **pki.env("query", public=True), "MYKO_REPO_ADDR": f"127.0.0.1:{repo.grpc.port}"}
        ),
        example_app,
        kind=LiveKind.QUERY,
    )
    gateway = Gateway(
        GatewaySettings(
            port=0,
            command_addr="127.0.0.1:9",
            query_addr=f"127.0.0.1:{query.grpc.port}",
            report_addr="127.0.0.1:9",
            tls=TlsSettings(
                cert_file=str(pki.certs["gateway"].cert),
                key_file=str(pki.certs["gateway"].key),
                ca_file=str(pki.ca),
                public=True,
            ),
        )
    )
    await query.start()
    await gateway.start()
    try:
        addr = f"127.0.0.1:{query.grpc.port}"
        # Anyone trusting the CA, no client certificate needed: callers bring tokens instead.
        async with Client(
            query_addr=addr,
            credentials=grpc.ssl_channel_credentials(pki.ca.read_bytes()),
            channel_options=[*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", "query")],
        ) as client:
            assert await client.get(queries_pb2.AllTargets()) == []
        async with grpc.aio.insecure_channel(addr) as plain:
            get = plain.unary_unary(
                "/myko.v1.QueryBus/Get", request_serializer=None, response_deserializer=None
            )
            assert await _code(get(b"", timeout=5)) == grpc.StatusCode.UNAVAILABLE
        # The gateway: HTTPS to the browser, TLS to the bus.
        context = ssl.create_default_context(cafile=str(pki.ca))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
            base = f"https://localhost:{gateway.port}"
            async with http.get(f"{base}/healthz") as response:
                assert response.status == 200
            request = query_pb2.QueryRequest(query=pack(queries_pb2.AllTargets())).SerializeToString()
            reply = await call(http, f"{base}/myko.v1.QueryBus/Get", request)
            assert reply.code == 0, reply.message
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.ClientError):
                await http.get(f"http://127.0.0.1:{gateway.port}/healthz")
    finally:
        await gateway.stop()
        await query.stop()


def test_a_service_refuses_to_start_with_a_certificate_it_cannot_use(pki: Pki, tmp_path: Path) -> None:
    query, repo = pki.certs["query"], pki.certs["repo"]

    def transport(cert: Path, key: Path, ca: Path) -> Transport:
        return Transport(TlsSettings(cert_file=str(cert), key_file=str(key), ca_file=str(ca)))

    assert transport(query.cert, query.key, pki.ca).identity == "query"
    with pytest.raises(ConfigError, match="does not belong"):
        transport(query.cert, repo.key, pki.ca)
    with pytest.raises(ConfigError, match="not signed by the CA"):
        transport(pki.forged_query.cert, pki.forged_query.key, pki.ca)
    with pytest.raises(ConfigError, match="MYKO_TLS_KEY"):
        transport(query.cert, tmp_path / "missing.key", pki.ca)
    with pytest.raises(ConfigError, match="go together"):
        TlsSettings.from_env({"MYKO_TLS_CERT": str(query.cert)})
    with pytest.raises(ConfigError, match="MYKO_TLS_PUBLIC"):
        TlsSettings.from_env({"MYKO_TLS_PUBLIC": "true"})
    expired = CertificateAuthority.load(pki.ca.parent).issue("old", days=0, out=tmp_path)
    with pytest.raises(ConfigError, match="not now"):
        load_identity(expired.cert.read_bytes(), expired.key.read_bytes(), pki.ca.read_bytes())
