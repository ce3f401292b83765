"""The local identity provider (idp/server.mjs on Node, started by myko/local/idp.py), for real.

What `make run`, the browser tests and the identity tests rely on: discovery
and JWKS, client-credentials tokens for services, the UI client's code + PKCE
sign-in with the demo users' passwords, refresh, JWT access tokens for the Myko
audience with roles and tenant, the configured lifetime, key rotation, and
refusals (wrong password, wrong secret, a public client asking for client
credentials, an unregistered redirect). Tokens are verified here the way a
service verifies them: PyJWT with the keys the issuer publishes.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from myko.errors import ConfigError
from myko.local.idp import AUDIENCE, CALLBACK_PATH, DEMO_USERS, LocalIdp, token_from_run_dir
from myko.local.idp_tokens import TokenRequestFailed

ROOT = Path(__file__).resolve().parent.parent
TTL_S = 30
UI = "http://127.0.0.1:18080"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalIdp]:
    run_dir = tmp_path_factory.mktemp("idp")
    with LocalIdp(
        package_dir=ROOT / "idp", run_dir=run_dir, ui_origins=[UI], access_token_ttl_s=TTL_S
    ) as provider:
        yield provider


def verify(idp: LocalIdp, token: str) -> dict[str, Any]:
    """As a Myko service would: the issuer's published keys, its issuer, our audience."""
    keys = jwt.PyJWKClient(f"{idp.issuer}/jwks", cache_keys=False)
    claims: dict[str, Any] = jwt.decode(
        token,
        keys.get_signing_key_from_jwt(token),
        algorithms=["RS256"],
        audience=AUDIENCE,
        issuer=idp.issuer,
    )
    return claims


def get_json(url: str) -> dict[str, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as reply:
        body: dict[str, Any] = json.loads(reply.read())
        return body


def test_discovery_names_the_issuer_and_the_flows_myko_uses(idp: LocalIdp) -> None:
    meta = get_json(f"{idp.issuer}/.well-known/openid-configuration")
    assert meta["issuer"] == idp.issuer
    assert {"authorization_code", "refresh_token", "client_credentials"} <= set(meta["grant_types_supported"])
    assert "S256" in meta["code_challenge_methods_supported"]
    assert meta["end_session_endpoint"].startswith(idp.issuer)
    keys = get_json(meta["jwks_uri"])["keys"]
    assert [k["kid"] for k in keys] == [k.kid for k in idp.keys.keys]
    # Public keys only.
    assert all("d" not in k for k in keys)


def test_a_service_client_gets_a_jwt_for_the_myko_audience(idp: LocalIdp) -> None:
    client = idp.client("tests-north")
    token = idp.tokens.client_credentials(client.client_id, client.secret)
    claims = verify(idp, token.access_token)
    assert claims["sub"] == claims["client_id"] == "tests-north"
    assert claims["aud"] == AUDIENCE
    assert claims["roles"] == ["operator"]
    assert claims["tenant"] == "north"
    assert claims["exp"] - claims["iat"] == TTL_S == token.expires_in
    assert jwt.get_unverified_header(token.access_token)["kid"] == idp.keys.current.kid


def test_the_saga_client_carries_its_own_identity(idp: LocalIdp) -> None:
    env = idp.saga_env()
    token = idp.tokens.client_credentials(env["MYKO_SAGA_CLIENT_ID"], env["MYKO_SAGA_CLIENT_SECRET"])
    claims = verify(idp, token.access_token)
    assert claims["sub"] == "saga_svc"
    assert "tenant" not in claims


def test_each_demo_user_signs_in_with_code_and_pkce_and_gets_their_roles_and_tenant(idp: LocalIdp) -> None:
    for user in DEMO_USERS:
        tokens = idp.tokens.sign_in(user.username, user.password)
        claims = verify(idp, tokens.access_token)
        assert claims["sub"] == user.username
        assert claims["client_id"] == "myko-ui"
        assert claims["roles"] == list(user.roles)
        assert claims["tenant"] == user.tenant
        # The ID token tells the UI who signed in (it shows the name and offers only allowed controls).
        assert tokens.id_token is not None
        profile = jwt.decode(tokens.id_token, options={"verify_signature": False})
        assert profile["preferred_username"] == user.username
        assert profile["roles"] == list(user.roles)
        assert profile["tenant"] == user.tenant
        assert tokens.refresh_token


def test_refresh_gives_a_new_access_token_for_the_same_user(idp: LocalIdp) -> None:
    first = idp.tokens.sign_in("carol", "demo")
    assert first.refresh_token is not None
    second = idp.tokens.refresh(first.refresh_token)
    claims = verify(idp, second.access_token)
    assert second.access_token != first.access_token
    assert (claims["sub"], claims["tenant"], claims["roles"]) == ("carol", "south", ["operator"])
    # Refresh tokens of the public client rotate: the used one is spent.
    assert second.refresh_token and second.refresh_token != first.refresh_token
    with pytest.raises(TokenRequestFailed, match="invalid_grant"):
        idp.tokens.refresh(first.refresh_token)


def test_wrong_password_and_unknown_user_are_refused(idp: LocalIdp) -> None:
    with pytest.raises(TokenRequestFailed, match="wrong user name or password"):
        idp.tokens.sign_in("alice", "not-her-password")
    with pytest.raises(TokenRequestFailed, match="wrong user name or password"):
        idp.tokens.sign_in("mallory", "demo")


def test_a_wrong_client_secret_is_refused(idp: LocalIdp) -> None:
    with pytest.raises(TokenRequestFailed, match="invalid_client"):
        idp.tokens.client_credentials("saga_svc", "guessed")


def test_the_public_ui_client_cannot_use_client_credentials(idp: LocalIdp) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": "myko-ui"}).encode()
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(f"{idp.issuer}/token", data=form, timeout=10)
    assert refused.value.code == 400
    assert "grant type is not allowed" in json.loads(refused.value.read())["error_description"]


def test_an_unregistered_redirect_uri_gets_no_code(idp: LocalIdp) -> None:
    from myko.local.idp_tokens import IdpTokens

    elsewhere = IdpTokens(
        issuer=idp.issuer, ui_client_id="myko-ui", redirect_uri=f"http://127.0.0.1:9/{CALLBACK_PATH}"
    )
    with pytest.raises(TokenRequestFailed):
        elsewhere.sign_in("alice", "demo")


def test_key_rotation_publishes_both_keys_and_signs_with_the_new_one(tmp_path: Path) -> None:
    with LocalIdp(package_dir=ROOT / "idp", run_dir=tmp_path, ui_origins=[UI]) as idp:
        client = idp.client("tests-south")
        before = idp.tokens.client_credentials(client.client_id, client.secret).access_token
        old_kid = idp.keys.current.kid
        idp.rotate_keys()
        new_kid = idp.keys.current.kid
        assert new_kid != old_kid
        published = [k["kid"] for k in get_json(f"{idp.issuer}/jwks")["keys"]]
        assert published == [new_kid, old_kid]
        after = idp.tokens.client_credentials(client.client_id, client.secret).access_token
        assert jwt.get_unverified_header(after)["kid"] == new_kid
        # A token issued before the rotation still verifies: its key is still published.
        assert verify(idp, before)["sub"] == "tests-south"
        assert verify(idp, after)["sub"] == "tests-south"
        # A second rotation drops the oldest key: tokens it signed stop verifying.
        idp.rotate_keys()
        assert old_kid not in [k["kid"] for k in get_json(f"{idp.issuer}/jwks")["keys"]]
        with pytest.raises(jwt.PyJWKClientError):
            verify(idp, before)


def test_tokens_minted_with_the_same_keys_verify_only_when_their_claims_do(idp: LocalIdp) -> None:
    """What identity tests build bad tokens with: the provider's own key, wrong claims."""
    good = {"iss": idp.issuer, "aud": AUDIENCE, "sub": "x", "iat": 1_700_000_000, "exp": 4_000_000_000}
    assert verify(idp, idp.keys.mint(good))["sub"] == "x"
    with pytest.raises(jwt.InvalidAudienceError):
        verify(idp, idp.keys.mint({**good, "aud": "urn:someone:else"}))
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(idp, idp.keys.mint({**good, "exp": 1_700_000_100}))


def test_the_key_file_is_private(idp: LocalIdp) -> None:
    assert idp.keys.path.stat().st_mode & 0o077 == 0
    assert idp.config_path.stat().st_mode & 0o077 == 0


def test_a_person_at_a_terminal_gets_a_users_or_a_clients_token_from_the_run_dir(idp: LocalIdp) -> None:
    # What `myko token bob` does against the provider `make run` started.
    bob = verify(idp, token_from_run_dir(idp.run_dir, "bob").access_token)
    assert (bob["sub"], bob["roles"], bob["tenant"]) == ("bob", ["viewer"], "north")
    service = verify(idp, token_from_run_dir(idp.run_dir, "tests-south").access_token)
    assert (service["sub"], service["tenant"]) == ("tests-south", "south")
    with pytest.raises(ConfigError, match="'mallory' is not a demo user or service client"):
        token_from_run_dir(idp.run_dir, "mallory")
    with pytest.raises(ConfigError, match="no local identity provider has run"):
        token_from_run_dir(idp.run_dir / "elsewhere", "bob")
