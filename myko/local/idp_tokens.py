"""Tokens from an OpenID provider over plain HTTP, for tests and scripts: no browser needed.

    tokens = IdpTokens(issuer="http://127.0.0.1:8090", ui_client_id="myko-ui",
                       redirect_uri="http://127.0.0.1:8080/auth/callback")
    service = tokens.client_credentials("saga_svc", secret)      # a service's own token
    alice = tokens.sign_in("alice", "demo")                       # what the UI gets for alice
    later = tokens.refresh(alice.refresh_token)                   # what its silent renew gets

`sign_in` walks the same authorization code + PKCE flow a browser does
(authorize, the provider's password form, the redirect back with a code, the
code exchange), keeping cookies; it never serves the redirect URI, it only
reads the code off the redirect. Written for the local provider (idp/server.mjs)
and its form fields. Sync (urllib): call it from fixtures, or through
`asyncio.to_thread` in async tests.
"""

from __future__ import annotations

import base64
import hashlib
import http.cookiejar
import json
import secrets
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from email.message import Message
from typing import IO, Any

HTTP_TIMEOUT_S = 10.0
# authorize -> sign-in page -> resume -> (consent) -> resume -> callback: a handful.
MAX_REDIRECTS = 10


class TokenRequestFailed(RuntimeError):
    """The provider refused: bad credentials, a bad request, or it is not running."""


@dataclass(frozen=True)
class TokenSet:
    access_token: str = field(repr=False)
    expires_in: int
    token_type: str = "Bearer"
    scope: str = ""
    refresh_token: str | None = field(default=None, repr=False)
    id_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_response(cls, body: dict[str, Any]) -> TokenSet:
        return cls(
            access_token=str(body["access_token"]),
            expires_in=int(body.get("expires_in", 0)),
            token_type=str(body.get("token_type", "Bearer")),
            scope=str(body.get("scope", "")),
            refresh_token=body.get("refresh_token"),
            id_token=body.get("id_token"),
        )

    @property
    def authorization(self) -> str:
        """The `authorization` header / metadata value."""
        return f"Bearer {self.access_token}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # Redirects are followed by hand: the last one goes to the app, which is not called.
    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: Message, newurl: str
    ) -> None:
        return None


class IdpTokens:
    def __init__(self, *, issuer: str, ui_client_id: str, redirect_uri: str) -> None:
        self.issuer = issuer.rstrip("/")
        self.ui_client_id = ui_client_id
        self.redirect_uri = redirect_uri
        self._metadata: dict[str, Any] | None = None

    def metadata(self) -> dict[str, Any]:
        """The provider's discovery document."""
        if self._metadata is None:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            url = f"{self.issuer}/.well-known/openid-configuration"
            with opener.open(url, timeout=HTTP_TIMEOUT_S) as reply:
                self._metadata = json.loads(reply.read())
        return self._metadata

    def client_credentials(self, client_id: str, secret: str, *, scope: str = "") -> TokenSet:
        form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
        basic = base64.b64encode(
            f"{urllib.parse.quote(client_id)}:{urllib.parse.quote(secret)}".encode()
        ).decode()
        return self._token(form, headers={"Authorization": f"Basic {basic}"})

    def refresh(self, refresh_token: str) -> TokenSet:
        return self._token(
            {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": self.ui_client_id}
        )

    def sign_in(self, username: str, password: str, *, scope: str = "openid profile") -> TokenSet:
        """The UI client's authorization code + PKCE flow, signing in with a password."""
        if not self.redirect_uri:
            raise ValueError("sign_in needs the UI client's redirect_uri")
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state = secrets.token_urlsafe(16)
        query = urllib.parse.urlencode(
            {
                "client_id": self.ui_client_id,
                "response_type": "code",
                "redirect_uri": self.redirect_uri,
                "scope": scope,
                "state": state,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
            _NoRedirect(),
        )
        url = f"{self.metadata()['authorization_endpoint']}?{query}"
        data: bytes | None = None
        signed_in = False
        for _ in range(MAX_REDIRECTS):
            status, location, page_url = _fetch(opener, url, data)
            data = None
            if location is None:
                if status == 200 and "/interaction/" in page_url and not signed_in:
                    # The sign-in form: post the password to it.
                    url = page_url.rstrip("/") + "/login"
                    data = urllib.parse.urlencode({"username": username, "password": password}).encode()
                    signed_in = True
                    continue
                if status == 401:
                    raise TokenRequestFailed(f"sign-in as {username!r} refused: wrong user name or password")
                raise TokenRequestFailed(f"sign-in as {username!r} stopped at {page_url} (HTTP {status})")
            url = urllib.parse.urljoin(page_url, location)
            if url.startswith(self.redirect_uri):
                params = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
                if "error" in params:
                    raise TokenRequestFailed(f"sign-in refused: {params['error'][0]}")
                if params.get("state") != [state]:
                    raise TokenRequestFailed("sign-in came back with another state")
                return self._token(
                    {
                        "grant_type": "authorization_code",
                        "code": params["code"][0],
                        "redirect_uri": self.redirect_uri,
                        "client_id": self.ui_client_id,
                        "code_verifier": verifier,
                    }
                )
        raise TokenRequestFailed(f"sign-in as {username!r} redirected more than {MAX_REDIRECTS} times")

    def _token(self, form: dict[str, str], *, headers: dict[str, str] | None = None) -> TokenSet:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(
            self.metadata()["token_endpoint"],
            data=urllib.parse.urlencode(form).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})},
        )
        try:
            with opener.open(request, timeout=HTTP_TIMEOUT_S) as reply:
                return TokenSet.from_response(json.loads(reply.read()))
        except urllib.error.HTTPError as e:
            body = e.read().decode(errors="replace")[:300]
            raise TokenRequestFailed(f"{form['grant_type']} refused (HTTP {e.code}): {body}") from None


def _fetch(
    opener: urllib.request.OpenerDirector, url: str, data: bytes | None
) -> tuple[int, str | None, str]:
    """(status, Location if a redirect, the URL answered)."""
    try:
        with opener.open(url, data=data, timeout=HTTP_TIMEOUT_S) as reply:
            reply.read()
            return int(reply.status), None, str(reply.url)
    except urllib.error.HTTPError as e:
        e.read()
        location = e.headers.get("Location") if 300 <= e.code < 400 else None
        return int(e.code), location, url
