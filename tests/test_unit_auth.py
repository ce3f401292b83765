"""Token verification, principals, policies and scopes, without Kafka.

Tokens come from a real issuer over HTTP on 127.0.0.1 (tests/oidc_issuer.py),
verified by the same code the services run: discovery, JWKS, PyJWT.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.utils import base64url_encode
from oidc_issuer import MintingIssuer, SigningKey, ec_key, rsa_key

from myko.authentication import Authenticator
from myko.errors import ConfigError, PermissionDenied, Unauthenticated
from myko.oidc import Issuer
from myko.policy import AUTHENTICATED, by_subject, by_tenant, roles, scopes, services
from myko.principal import ANONYMOUS, Principal, PrincipalKind
from myko.settings import AuthSettings, CommandSettings, GatewaySettings, SagaSettings, _Env
from myko.tokens import TokenVerifier


@pytest.fixture
async def issuer() -> AsyncIterator[MintingIssuer]:
    iss = await MintingIssuer().start()
    try:
        yield iss
    finally:
        await iss.stop()


def settings_for(issuer: MintingIssuer, **env: str) -> AuthSettings:
    return AuthSettings.from_env(_Env({"MYKO_APP": "targets", **issuer.env(**env)}))


@pytest.fixture
async def auth(issuer: MintingIssuer) -> AsyncIterator[Authenticator]:
    a = Authenticator(settings_for(issuer))
    try:
        yield a
    finally:
        await a.close()


async def test_a_good_token_gives_its_principal(issuer: MintingIssuer, auth: Authenticator) -> None:
    token = issuer.token("alice", roles=["operator", "viewer"], tenant="north", scope="targets:write")
    p = await auth.from_header(f"Bearer {token}")
    assert p.subject == "alice" and p.kind is PrincipalKind.USER
    assert p.roles == {"operator", "viewer"} and p.tenant == "north" and p.scopes == {"targets:write"}
    assert abs(p.expires_at - (time.time() + issuer.token_ttl_s)) < 5
    # The scheme is case-insensitive, as HTTP says.
    assert (await auth.from_header(f"bearer {token}")).subject == "alice"


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda i: None, "no credentials"),
        (lambda i: "", "no credentials"),
        (lambda i: "Basic YWxpY2U6c2VjcmV0", "must be `Bearer <token>`"),
        (lambda i: "Bearer", "must be `Bearer <token>`"),
        (lambda i: "Bearer not-a-jwt", "not a JWT"),
        (lambda i: "Bearer " + "a" * 20_000, "longer than"),
        (lambda i: "Bearer " + i.forged(), "signature does not verify"),
        (lambda i: "Bearer " + i.token(ttl_s=-5), "expired"),
        (lambda i: "Bearer " + i.token(iss="http://127.0.0.1:1"), "not from the issuer"),
        (lambda i: "Bearer " + i.token(aud="someone-else"), "not for this audience"),
        (lambda i: "Bearer " + i.token(nbf=int(time.time()) + 600), "not valid yet"),
        (lambda i: "Bearer " + i.token(key=rsa_key()), "key the issuer does not publish"),
        (lambda i: "Bearer " + i.token(sub=None), "no subject"),
        (lambda i: "Bearer " + i.token(roles="x" * 300), "roles claim"),
    ],
)
async def test_bad_credentials_are_unauthenticated(
    issuer: MintingIssuer, auth: Authenticator, make: object, says: str
) -> None:
    header = make(issuer)  # type: ignore[operator]
    with pytest.raises(Unauthenticated, match=says):
        await auth.from_header(header)


def _hs256(claims: dict[str, object], secret: bytes, kid: str) -> str:
    """An HS256 JWT made by hand (PyJWT rightly refuses to use a public key as an HMAC secret)."""
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    signing_input = b".".join(base64url_encode(json.dumps(part).encode()) for part in (header, claims))
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + base64url_encode(signature)).decode()


async def test_symmetric_and_unsigned_tokens_are_refused(issuer: MintingIssuer, auth: Authenticator) -> None:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": "mallory",
        "iss": issuer.url,
        "aud": issuer.audience,
        "iat": now,
        "exp": now + 60,
    }
    unsigned = jwt.encode(claims, "", algorithm="none")
    # HS256 keyed with the issuer's public key: the classic key-confusion forgery.
    pem = issuer.keys[0].private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    confused = _hs256(claims, pem, issuer.keys[0].kid)
    for token in (unsigned, confused):
        with pytest.raises(Unauthenticated, match=r"algorithm .* is not accepted"):
            await auth.from_header(f"Bearer {token}")


async def test_es256_keys_work_and_a_token_must_use_its_keys_algorithm(issuer: MintingIssuer) -> None:
    ec = issuer.rotate(ec_key())
    auth = Authenticator(settings_for(issuer))
    try:
        assert (await auth.from_header(f"Bearer {issuer.token(key=ec)}")).subject == "alice"
        # An RSA key published for RS256 does not verify a PS256 header.
        rsa_signed = jwt.encode(
            {
                "sub": "a",
                "iss": issuer.url,
                "aud": issuer.audience,
                "iat": int(time.time()),
                "exp": int(time.time()) + 60,
            },
            issuer.keys[0].private,
            algorithm="PS256",
            headers={"kid": issuer.keys[0].kid},
        )
        with pytest.raises(Unauthenticated, match="not the one its key is published for"):
            await auth.from_header(f"Bearer {rsa_signed}")
    finally:
        await auth.close()


async def test_client_credentials_tokens_are_services(issuer: MintingIssuer, auth: Authenticator) -> None:
    token = issuer.token("saga-svc", roles=[], tenant=None, client_id="saga-svc")
    p = await auth.from_header(f"Bearer {token}")
    assert p.kind is PrincipalKind.SERVICE and p.subject == "saga-svc" and p.tenant is None
    # A user signed in through a client is a user.
    user = await auth.from_header(f"Bearer {issuer.token('alice', client_id='ui')}")
    assert user.kind is PrincipalKind.USER


async def test_nested_role_claims_by_dotted_path(issuer: MintingIssuer) -> None:
    auth = Authenticator(settings_for(issuer, MYKO_OIDC_ROLES_CLAIM="realm_access.roles"))
    try:
        token = issuer.token(roles=[], realm_access={"roles": ["viewer"]})
        assert (await auth.from_header(f"Bearer {token}")).roles == {"viewer"}
    finally:
        await auth.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_rotated_key_is_picked_up_and_unknown_kids_cannot_hammer_the_issuer(
    issuer: MintingIssuer,
) -> None:
    settings = settings_for(issuer, MYKO_OIDC_JWKS_REFRESH_MIN_S="10")
    clock = FakeClock()
    verifier = TokenVerifier(settings, Issuer(settings, clock=clock))
    await verifier.verify(issuer.token())
    assert issuer.hits["/jwks"] == 1
    # Fifty tokens naming keys nobody published: refused, and no refetch within 10 s.
    stranger = rsa_key()
    for i in range(50):
        with pytest.raises(Unauthenticated, match="does not publish"):
            await verifier.verify(issuer.token(key=SigningKey(f"kid-{i}", "RS256", stranger.private)))
    assert issuer.hits["/jwks"] == 1
    new = issuer.rotate()
    with pytest.raises(Unauthenticated, match="does not publish"):
        await verifier.verify(issuer.token(key=new))  # too soon to look again
    clock.now += 10
    p = await verifier.verify(issuer.token("bob", key=new))
    assert p.subject == "bob" and issuer.hits["/jwks"] == 2


async def test_a_key_the_issuer_withdraws_stops_working_after_the_max_age(issuer: MintingIssuer) -> None:
    settings = settings_for(issuer, MYKO_OIDC_JWKS_MAX_AGE_S="60")
    clock = FakeClock()
    verifier = TokenVerifier(settings, Issuer(settings, clock=clock))
    old = issuer.keys[0]
    await verifier.verify(issuer.token("a"))
    issuer.keys = [rsa_key()]
    clock.now += 61
    with pytest.raises(Unauthenticated, match="does not publish"):
        await verifier.verify(issuer.token("b", key=old))


async def test_verified_tokens_are_cached_until_they_expire(issuer: MintingIssuer) -> None:
    settings = settings_for(issuer)
    clock = FakeClock()
    clock.now = time.time()
    verifier = TokenVerifier(settings, Issuer(settings), clock=clock)
    token = issuer.token(ttl_s=30)
    first = await verifier.verify(token)
    assert verifier.cached(token) is first
    clock.now += 31
    assert verifier.cached(token) is None


async def test_an_unreachable_issuer_is_unavailable_not_unauthenticated() -> None:
    from myko.errors import Unavailable

    settings = AuthSettings(issuer="http://127.0.0.1:1", audience="a")
    auth = Authenticator(settings)
    dead = MintingIssuer()
    dead.url = "http://127.0.0.1:1"
    try:
        with pytest.raises(Unavailable, match="cannot reach the identity provider"):
            await auth.from_header(f"Bearer {dead.token()}")
    finally:
        await auth.close()


async def test_discovery_must_name_the_configured_issuer(issuer: MintingIssuer) -> None:
    from myko.errors import Unavailable

    # The same server, spelt with a trailing slash: not the issuer its tokens name.
    auth = Authenticator(AuthSettings(issuer=issuer.url + "/", audience=issuer.audience))
    try:
        with pytest.raises(Unavailable, match="names issuer"):
            await auth.from_header(f"Bearer {issuer.token()}")
    finally:
        await auth.close()


async def test_expiry_and_revocation_are_problems_of_a_principal(issuer: MintingIssuer) -> None:
    clock = FakeClock()
    revoked: set[str] = set()
    auth = Authenticator(settings_for(issuer), revoked=lambda p: p.subject in revoked, clock=clock)
    p = Principal(subject="alice", kind=PrincipalKind.USER, expires_at=clock.now + 5)
    assert auth.problem(p) is None
    revoked.add("alice")
    assert "revoked" in str(auth.problem(p))
    revoked.clear()
    clock.now += 5
    assert "expired" in str(auth.problem(p))
    assert auth.problem(ANONYMOUS) is None


async def test_with_auth_off_every_call_is_anonymous() -> None:
    auth = Authenticator.off()
    assert await auth.from_header(None) is ANONYMOUS
    assert await auth.from_metadata([("authorization", "Bearer garbage")]) is ANONYMOUS


def test_policies() -> None:
    bob = Principal(subject="bob", kind=PrincipalKind.USER, roles=frozenset({"viewer"}), tenant="north")
    saga = Principal(subject="saga-svc", kind=PrincipalKind.SERVICE)
    scoped = Principal(subject="app", kind=PrincipalKind.USER, scopes=frozenset({"targets:read"}))
    assert roles("viewer", "operator").allows(bob) and not roles("operator").allows(bob)
    assert scopes("targets:read").allows(scoped) and not scopes("targets:read").allows(bob)
    assert services().allows(saga) and not services().allows(bob)
    assert services("saga-svc").allows(saga) and not services("other").allows(saga)
    assert (roles("operator") | services()).allows(saga)
    assert AUTHENTICATED.allows(bob)
    # Auth off: policies do not apply.
    assert roles("operator").allows(ANONYMOUS)
    with pytest.raises(
        PermissionDenied, match="command x needs role operator; user 'bob' has roles 'viewer'"
    ):
        roles("operator").check(bob, "command x")


def test_scopes_key_the_caller() -> None:
    bob = Principal(subject="bob", kind=PrincipalKind.USER, tenant="north")
    saga = Principal(subject="saga-svc", kind=PrincipalKind.SERVICE)
    assert by_tenant.key(bob) == "north" and by_subject.key(bob) == "bob"
    with pytest.raises(PermissionDenied, match="belongs to no tenant"):
        by_tenant.key(saga)
    assert by_tenant.key(ANONYMOUS) == "" and by_subject.key(ANONYMOUS) == ""


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({}, "MYKO_OIDC_ISSUER is not set"),
        ({"MYKO_AUTH_DISABLED": "true", "MYKO_OIDC_ISSUER": "https://id.example"}, "choose one"),
        ({"MYKO_AUTH_DISABLED": "maybe"}, "MYKO_AUTH_DISABLED"),
        ({"MYKO_OIDC_ISSUER": "https://id.example"}, "MYKO_OIDC_AUDIENCE is not set"),
        ({"MYKO_OIDC_ISSUER": "id.example", "MYKO_OIDC_AUDIENCE": "a"}, "http\\(s\\) URL"),
        ({"MYKO_OIDC_ISSUER": "http://id.example", "MYKO_OIDC_AUDIENCE": "a"}, "MYKO_OIDC_ALLOW_HTTP"),
        (
            {
                "MYKO_OIDC_ISSUER": "https://id.example",
                "MYKO_OIDC_AUDIENCE": "a",
                "MYKO_OIDC_LEEWAY_S": "600",
            },
            "MYKO_OIDC_LEEWAY_S",
        ),
        (
            {
                "MYKO_OIDC_ISSUER": "https://id.example",
                "MYKO_OIDC_AUDIENCE": "a",
                "MYKO_OIDC_ALGORITHMS": "HS256",
            },
            "MYKO_OIDC_ALGORITHMS",
        ),
    ],
)
def test_auth_settings_fail_fast(env: dict[str, str], says: str) -> None:
    for cls in (CommandSettings, GatewaySettings):
        with pytest.raises(ConfigError, match=says):
            cls.from_env({"MYKO_APP": "targets", **env})


def test_saga_needs_its_client_credentials_when_auth_is_on() -> None:
    env = {"MYKO_APP": "targets", "MYKO_OIDC_ISSUER": "https://id.example", "MYKO_OIDC_AUDIENCE": "a"}
    with pytest.raises(ConfigError, match="MYKO_SAGA_CLIENT_ID"):
        SagaSettings.from_env(env)
    s = SagaSettings.from_env({**env, "MYKO_SAGA_CLIENT_ID": "saga", "MYKO_SAGA_CLIENT_SECRET": "pw"})
    assert s.credentials is not None and "pw" not in repr(s)
    assert SagaSettings.from_env({"MYKO_APP": "targets", "MYKO_AUTH_DISABLED": "true"}).credentials is None


async def test_concurrent_first_calls_fetch_the_keys_once(issuer: MintingIssuer, auth: Authenticator) -> None:
    tokens = [issuer.token(f"u{i}") for i in range(20)]
    got = await asyncio.gather(*(auth.from_header(f"Bearer {t}") for t in tokens))
    assert [p.subject for p in got] == [f"u{i}" for i in range(20)]
    assert issuer.hits["/jwks"] == 1 and issuer.hits["/.well-known/openid-configuration"] == 1


def test_scoped_registration_needs_a_handler_that_takes_the_scope_key() -> None:
    from targets.v1 import queries_pb2, reports_pb2

    from myko.app import App

    # Typed Any: mypy rejects these already (tests/test_typing.py); this is the run-time check.
    two: Any = lambda q, repos: None  # noqa: E731
    three: Any = lambda q, repos, key: None  # noqa: E731
    app = App("t")
    with pytest.raises(
        ConfigError, match=r"declares scope=tenant, but its handler .* takes no scope parameter"
    ):
        app.query(queries_pb2.AllZones, scope=by_tenant)(two)
    with pytest.raises(ConfigError, match="declares no scope"):
        app.report(reports_pb2.ZoneTotals)(three)
    app.query(queries_pb2.AllZones, allow=roles("viewer"), scope=by_tenant)(three)
    reg = app.queries.get("targets.v1.AllZones")
    assert reg is not None and reg.scope is by_tenant and reg.allow.description == "role viewer"
    # The framework's own commands carry their policies.
    revoke = app.commands.get("myko.v1.RevokeTokens")
    assert revoke is not None and revoke.allow.description == "role myko-admin"
