"""The services against the real local identity provider (npm oidc-provider, idp/), on the real broker.

tests/test_auth.py mints its own tokens to reach every bad case; this one takes
tokens the way deployments do: from a provider's token endpoint (client
credentials) and its sign-in (code + PKCE), verified through its discovery
document and JWKS. saga_svc gets its own token from the same provider.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from conftest import InProcessStack
from kafka_inspect import read_topic
from targets.v1 import commands_pb2, entities_pb2, queries_pb2
from test_auth import execute_request, query_request

from myko.app import App
from myko.events import H_PRINCIPAL
from myko.saga_service import SagaService
from myko.settings import SagaSettings
from myko.v1 import command_pb2, query_pb2

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]


@pytest.fixture
async def stack(
    myko_env: dict[str, str], example_app: App, local_idp: Any
) -> AsyncIterator[tuple[InProcessStack, SagaService]]:
    env = {k: v for k, v in myko_env.items() if k != "MYKO_AUTH_DISABLED"}
    env.update(local_idp.service_env())
    s = await InProcessStack.start(env, example_app)
    saga_env = {
        **env,
        **local_idp.saga_env(),
        "MYKO_COMMAND_ADDR": f"127.0.0.1:{s.command.grpc.port}",
        "MYKO_SAGA_PORT": "0",
        "MYKO_SAGA_GROUP_ID": "saga",
    }
    sagas = SagaService(SagaSettings.from_env(saga_env), example_app)
    try:
        async with asyncio.timeout(60):
            await sagas.start()
        yield s, sagas
    finally:
        await sagas.stop()
        await s.stop()


async def _execute(s: InProcessStack, authorization: str, command: Any) -> command_pb2.CommandResult:
    assert s.clients.command is not None
    execute = s.clients.command.unary_unary(
        "/myko.v1.CommandBus/Execute",
        request_serializer=command_pb2.CommandRequest.SerializeToString,
        response_deserializer=command_pb2.CommandResult.FromString,
    )
    result: command_pb2.CommandResult = await execute(
        execute_request(command), metadata=(("authorization", authorization),), timeout=15
    )
    return result


async def _targets(s: InProcessStack, authorization: str) -> list[str]:
    get = s.clients.query.unary_unary(
        "/myko.v1.QueryBus/Get",
        request_serializer=query_pb2.QueryRequest.SerializeToString,
        response_deserializer=query_pb2.QueryResult.FromString,
    )
    result = await get(
        query_request(queries_pb2.AllTargets()), metadata=(("authorization", authorization),), timeout=15
    )
    out = []
    for packed in result.items:
        target = entities_pb2.Target()
        packed.Unpack(target)
        out.append(target.name)
    return out


async def test_provider_tokens_are_accepted_and_the_saga_acts_as_itself(
    stack: tuple[InProcessStack, SagaService], local_idp: Any
) -> None:
    s, _ = stack
    client = local_idp.client("tests-north")
    service = await asyncio.to_thread(local_idp.tokens.client_credentials, client.client_id, client.secret)
    bob = local_idp.user("bob")
    viewer = await asyncio.to_thread(local_idp.tokens.sign_in, bob.username, bob.password)

    # A client-credentials token with the operator role writes in its tenant.
    await _execute(s, service.authorization, commands_pb2.SetZone(id="n-zone", name="north zone"))
    # The viewer signed in through the provider reads, and the saga's perimeter shows up.
    async with asyncio.timeout(30):
        while "perimeter" not in await _targets(s, viewer.authorization):  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _execute(s, viewer.authorization, commands_pb2.SetZone(name="not mine to make"))
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await _targets(s, "Bearer " + service.access_token[:-4] + "AAAA")
    assert anonymous.value.code() is grpc.StatusCode.UNAUTHENTICATED

    bootstrap, prefix = s.env["KAFKA_BOOTSTRAP_SERVERS"], s.env["MYKO_TOPIC_PREFIX"]
    zones = await read_topic(bootstrap, f"{prefix}targets.v1.Zone")
    targets = await read_topic(bootstrap, f"{prefix}targets.v1.Target")
    assert [dict(r.headers)[H_PRINCIPAL] for r in zones] == [b"tests-north"]
    assert [dict(r.headers)[H_PRINCIPAL] for r in targets] == [
        local_idp.saga_env()["MYKO_SAGA_CLIENT_ID"].encode()
    ]
