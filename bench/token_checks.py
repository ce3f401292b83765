"""What checking tokens costs per call (issue 13): `python -m bench.token_checks`.

No Kafka needed. An issuer on 127.0.0.1 serves discovery and a JWKS (RS256 and
ES256 keys made here), and the services' own code verifies:

- **first sight** of a token: signature + claims (PyJWT), per algorithm;
- **cached**: a token seen before (every later call with it), through
  `Authenticator.from_metadata` as the services call it, revocation check included;
- **per call over gRPC**: QueryBus/Get round trips against the real LiveBus
  (empty store, so the handler costs next to nothing) with auth off, and with
  auth on and a cached token; the difference is what a caller pays per call.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from google.protobuf import any_pb2
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from myko.authentication import Authenticator
from myko.live import LiveHub
from myko.live_bus import LiveBus, register_live_bus
from myko.live_kind import LiveKind
from myko.repo import Store
from myko.settings import AuthSettings
from myko.v1 import query_pb2

AUDIENCE = "myko-bench"


@dataclass(frozen=True)
class TokenCheckResult:
    first_sight_us: dict[str, float]  # algorithm -> median µs per new token
    cached_us: float  # median µs per call with a known token
    grpc_off_us: float  # QueryBus/Get p50, auth off
    grpc_on_us: float  # QueryBus/Get p50, auth on, cached token
    calls: int

    def lines(self) -> list[str]:
        out = [f"token checks ({self.calls} calls each, medians)"]
        for alg, us in self.first_sight_us.items():
            out.append(f"  first sight of a token, {alg:5}     {us:8.1f} µs")
        out.append(f"  cached token (from_metadata)    {self.cached_us:8.1f} µs")
        out.append(f"  QueryBus/Get p50, auth off      {self.grpc_off_us:8.1f} µs")
        out.append(f"  QueryBus/Get p50, auth on       {self.grpc_on_us:8.1f} µs")
        out.append(f"  cost per call over gRPC         {self.grpc_on_us - self.grpc_off_us:8.1f} µs")
        return out


class _Issuer:
    def __init__(self) -> None:
        self.keys: dict[str, tuple[str, Any]] = {
            "rs": ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            "es": ("ES256", ec.generate_private_key(ec.SECP256R1())),
        }
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def token(self, kid: str) -> str:
        alg, key = self.keys[kid]
        now = int(time.time())
        claims = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": f"user-{uuid.uuid4().hex[:8]}",
            "iat": now,
            "exp": now + 3600,
            "roles": ["viewer"],
            "tenant": "north",
        }
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})

    async def _discovery(self, request: web.Request) -> web.Response:
        return web.json_response({"issuer": self.url, "jwks_uri": f"{self.url}/jwks"})

    async def _jwks(self, request: web.Request) -> web.Response:
        keys = []
        for kid, (alg, key) in self.keys.items():
            codec = RSAAlgorithm if alg == "RS256" else ECAlgorithm
            jwk = codec.to_jwk(key.public_key(), as_dict=True)
            jwk.update(kid=kid, alg=alg, use="sig")
            keys.append(jwk)
        return web.json_response({"keys": keys})


async def _median_us(calls: int, fn: Callable[[int], Awaitable[object]]) -> float:
    samples = []
    for i in range(calls):
        started = time.perf_counter()
        await fn(i)
        samples.append((time.perf_counter() - started) * 1e6)
    return statistics.median(samples)


async def _first_sight(auth: Authenticator, tokens: list[str]) -> float:
    """Median cost of verifying a token never seen before (each token once)."""
    return await _median_us(len(tokens), lambda i: auth.from_header(f"Bearer {tokens[i]}"))


async def _grpc_get_p50(
    auth: Authenticator, metadata: tuple[tuple[str, str], ...] | None, calls: int
) -> float:
    from targets import app  # the example's AllZones: a real handler over an empty store
    from targets.v1 import queries_pb2

    store = Store(app.entities)
    bus = LiveBus(kind=LiveKind.QUERY, registry=app.queries, store=store, hub=LiveHub(), auth=auth)
    server = grpc.aio.server()
    register_live_bus(server, bus)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    get = channel.unary_unary(
        "/myko.v1.QueryBus/Get",
        request_serializer=query_pb2.QueryRequest.SerializeToString,
        response_deserializer=query_pb2.QueryResult.FromString,
    )
    packed = any_pb2.Any()
    packed.Pack(queries_pb2.AllZones())
    request = query_pb2.QueryRequest(query=packed)
    try:
        for _ in range(50):  # warm up: connection, caches
            await get(request, metadata=metadata, timeout=10)
        return await _median_us(calls, lambda i: get(request, metadata=metadata, timeout=10))
    finally:
        await channel.close(None)
        await server.stop(None)


async def measure_token_checks(calls: int = 2000) -> TokenCheckResult:
    issuer = _Issuer()
    await issuer.start()
    settings = AuthSettings(issuer=issuer.url, audience=AUDIENCE, leeway_s=0)
    auth = Authenticator(settings, revoked=lambda p: False)
    try:
        await auth.warm_up()
        first: dict[str, float] = {}
        for kid in ("rs", "es"):
            first[issuer.keys[kid][0]] = await _first_sight(auth, [issuer.token(kid) for _ in range(200)])
        known = issuer.token("rs")
        metadata = (("authorization", f"Bearer {known}"),)
        await auth.from_metadata(metadata)
        cached = await _median_us(calls, lambda i: auth.from_metadata(metadata))
        off = await _grpc_get_p50(Authenticator.off(), None, calls)
        on = await _grpc_get_p50(auth, metadata, calls)
        return TokenCheckResult(first, cached, off, on, calls)
    finally:
        await auth.close()
        await issuer.stop()


def main() -> None:
    result = asyncio.run(measure_token_checks())
    print("\n".join(result.lines()))


if __name__ == "__main__":
    main()
