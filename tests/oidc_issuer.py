"""A test issuer: OIDC discovery, a JWKS and a client-credentials token endpoint on 127.0.0.1.

The keys are the test's, so it can mint every kind of token a real provider
would never send: expired, for another audience, from another issuer, signed
with a key the issuer does not publish. Tokens are standard JWTs signed with
PyJWT; the services verify them exactly as they verify any provider's (myko/oidc.py).
This is not the local identity provider `make run` starts (that is npm's
oidc-provider); it only serves what verification and client credentials need.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

AUDIENCE = "myko-test"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        algorithm = RSAAlgorithm if self.alg in ("RS256", "PS256") else ECAlgorithm
        out: dict[str, Any] = algorithm.to_jwk(public, as_dict=True)
        out.update(kid=self.kid, use="sig", alg=self.alg)
        return out


def rsa_key(kid: str | None = None, alg: str = "RS256") -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey(kid or uuid.uuid4().hex[:12], alg, private)


def ec_key(kid: str | None = None) -> SigningKey:
    return SigningKey(kid or uuid.uuid4().hex[:12], "ES256", ec.generate_private_key(ec.SECP256R1()))


@dataclass
class ServiceClient:
    secret: str
    roles: Sequence[str] = ()


@dataclass
class MintingIssuer:
    """Start with `await issuer.start()`; `url` is the issuer (and `iss` of its tokens)."""

    audience: str = AUDIENCE
    keys: list[SigningKey] = field(default_factory=lambda: [rsa_key()])
    clients: dict[str, ServiceClient] = field(default_factory=dict)
    token_ttl_s: int = 300
    # Requests served, by path: tests check how often the services came for keys.
    hits: dict[str, int] = field(default_factory=dict)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> MintingIssuer:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_post("/token", self._token)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def env(self, **extra: str) -> dict[str, str]:
        """Settings for services that trust this issuer (leeway 0, quick re-checks)."""
        return {
            "MYKO_OIDC_ISSUER": self.url,
            "MYKO_OIDC_AUDIENCE": self.audience,
            "MYKO_OIDC_LEEWAY_S": "0",
            "MYKO_AUTH_RECHECK_MS": "200",
            **extra,
        }

    # --- minting -----------------------------------------------------------
    def token(
        self,
        sub: str | None = "alice",
        *,
        roles: Sequence[str] = ("operator",),
        tenant: str | None = "north",
        ttl_s: float | None = None,
        iat: float | None = None,
        key: SigningKey | None = None,
        **claims: Any,
    ) -> str:
        """A token this issuer would sign; any claim can be overridden (`iss=`, `aud=`, `exp=`...)."""
        now = time.time() if iat is None else iat
        payload: dict[str, Any] = {
            "iss": self.url,
            "aud": self.audience,
            "iat": int(now),
            "exp": int(now + (self.token_ttl_s if ttl_s is None else ttl_s)),
            "jti": uuid.uuid4().hex,
            "roles": list(roles),
        }
        if sub is not None:
            payload["sub"] = sub
        if tenant is not None:
            payload["tenant"] = tenant
        payload.update(claims)
        signer = key or self.keys[-1]
        return jwt.encode(payload, signer.private, algorithm=signer.alg, headers={"kid": signer.kid})

    def forged(self, **kw: Any) -> str:
        """Signed with a key the issuer does not publish, under a published kid."""
        impostor = rsa_key(kid=self.keys[-1].kid)
        return self.token(key=impostor, **kw)

    def rotate(self, key: SigningKey | None = None) -> SigningKey:
        """Publish a new key and sign with it from now on (the old one stays published)."""
        new = key or rsa_key()
        self.keys.append(new)
        return new

    # --- HTTP --------------------------------------------------------------
    def _hit(self, request: web.Request) -> None:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1

    async def _discovery(self, request: web.Request) -> web.Response:
        self._hit(request)
        return web.json_response(
            {
                "issuer": self.url,
                "jwks_uri": f"{self.url}/jwks",
                "token_endpoint": f"{self.url}/token",
                "grant_types_supported": ["client_credentials"],
                "id_token_signing_alg_values_supported": sorted({k.alg for k in self.keys}),
            }
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        self._hit(request)
        return web.json_response({"keys": [k.jwk() for k in self.keys]})

    async def _token(self, request: web.Request) -> web.Response:
        self._hit(request)
        form = await request.post()
        client_id, secret = _basic(request.headers.get("Authorization", ""))
        client = self.clients.get(client_id)
        if client is None or client.secret != secret:
            return web.json_response({"error": "invalid_client"}, status=401)
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if form.get("resource") != self.audience:
            return web.json_response({"error": "invalid_target"}, status=400)
        # As RFC 9068 says for client credentials: the subject is the client itself.
        token = self.token(client_id, roles=client.roles, tenant=None, client_id=client_id)
        return web.json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": self.token_ttl_s}
        )


def _basic(header: str) -> tuple[str, str]:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    user, _, password = base64.b64decode(value).decode().partition(":")
    return unquote(user), unquote(password)
