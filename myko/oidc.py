"""The issuer, as Myko sees it: OIDC discovery, its signing keys (JWKS), its token endpoint.

Everything is found from the issuer URL alone (`<issuer>/.well-known/openid-configuration`),
so any OpenID provider works. The keys are fetched with aiohttp, not with
PyJWT's `PyJWKClient`: that one fetches synchronously (it would stall a
service's event loop) and refetches on every unknown `kid`, which would let a
caller make us hammer the issuer. Here an unknown `kid` refetches at most every
`jwks_refresh_min_s` (how a key rotation is picked up), known keys are refetched
once older than `jwks_max_age_s` (how a withdrawn key stops working), and a
failed refetch keeps the keys already known. Parsing and verifying keys is PyJWT's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import jwt

from myko.errors import Unauthenticated, Unavailable
from myko.settings import AuthSettings

log = logging.getLogger(__name__)

HTTP_TIMEOUT_S = 5.0
# Discovery documents and key sets are small; anything larger is not one.
MAX_DOCUMENT_BYTES = 1024 * 1024
DISCOVERY_PATH = "/.well-known/openid-configuration"


class Issuer:
    """Discovery and signing keys of one issuer, fetched lazily and shared by every check."""

    def __init__(self, settings: AuthSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._metadata: dict[str, Any] | None = None
        # kid -> the JWK as published (PyJWK objects are made per algorithm, below).
        self._jwks: dict[str, dict[str, Any]] = {}
        self._keys: dict[tuple[str, str], jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._fetching: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return self._settings.issuer

    async def close(self) -> None:
        if self._fetching is not None:
            self._fetching.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- discovery -----------------------------------------------------------
    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            url = self.url.rstrip("/") + DISCOVERY_PATH
            doc = await self._get_json(url, "discovery document")
            # OIDC Discovery 1.0 §4.3: the document must name the issuer it was fetched for.
            if doc.get("issuer") != self.url:
                raise Unavailable(
                    f"the discovery document at {url} names issuer {str(doc.get('issuer'))[:200]!r}, "
                    f"not {self.url!r} (MYKO_OIDC_ISSUER must be the issuer exactly as its tokens say)"
                )
            if not isinstance(doc.get("jwks_uri"), str):
                raise Unavailable(f"the discovery document at {url} has no jwks_uri")
            self._metadata = doc
        return self._metadata

    async def token_endpoint(self) -> str:
        endpoint = (await self.metadata()).get("token_endpoint")
        if not isinstance(endpoint, str):
            raise Unavailable(f"issuer {self.url} publishes no token_endpoint")
        return endpoint

    # --- signing keys --------------------------------------------------------
    async def prefetch(self) -> None:
        """Fetch discovery and keys now; Unavailable when the issuer cannot be reached."""
        await self._refresh(keep_on_failure=False)

    async def signing_key(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The issuer's key for a token's header; Unauthenticated when it has none such."""
        now = self._clock()
        if self._fetched_at is None or now - self._fetched_at >= self._settings.jwks_max_age_s:
            await self._refresh(keep_on_failure=self._fetched_at is not None)
        jwk = self._find(kid)
        stale = (
            self._fetched_at is not None
            and self._clock() - self._fetched_at >= self._settings.jwks_refresh_min_s
        )
        if jwk is None and stale:
            # Perhaps a key the issuer rotated to since we last looked.
            await self._refresh(keep_on_failure=True)
            jwk = self._find(kid)
        if jwk is None:
            raise Unauthenticated("the token is signed with a key the issuer does not publish")
        return self._key(jwk, alg)

    def _find(self, kid: str | None) -> dict[str, Any] | None:
        if kid is None:
            # A token without kid is only unambiguous when the issuer has one key.
            return next(iter(self._jwks.values())) if len(self._jwks) == 1 else None
        return self._jwks.get(kid)

    def _key(self, jwk: dict[str, Any], alg: str) -> jwt.PyJWK:
        kid = str(jwk.get("kid", ""))
        published = jwk.get("alg")
        if published is not None and published != alg:
            raise Unauthenticated(f"the token's algorithm {alg} is not the one its key is published for")
        key = self._keys.get((kid, alg))
        if key is None:
            try:
                key = jwt.PyJWK(jwk, algorithm=None if published else alg)
            except jwt.PyJWTError:
                raise Unauthenticated(f"the token's algorithm {alg} does not fit its key") from None
            self._keys[(kid, alg)] = key
        return key

    async def _refresh(self, *, keep_on_failure: bool) -> None:
        # Concurrent checks wait for one fetch instead of each starting their own.
        if self._fetching is None or self._fetching.done():
            self._fetching = asyncio.create_task(self._fetch_keys())
        try:
            await asyncio.shield(self._fetching)
        except Unavailable as exc:
            if not keep_on_failure:
                raise
            log.warning("cannot refresh the signing keys of %s (keeping the known ones): %s", self.url, exc)

    async def _fetch_keys(self) -> None:
        started = self._clock()
        try:
            uri = str((await self.metadata())["jwks_uri"])
            doc = await self._get_json(uri, "key set")
            keys = doc.get("keys")
            if not isinstance(keys, list):
                raise Unavailable(f"the key set at {uri} has no keys list")
            jwks: dict[str, dict[str, Any]] = {}
            for jwk in keys:
                # Encryption keys are not for verifying signatures.
                if isinstance(jwk, dict) and jwk.get("use", "sig") == "sig":
                    jwks[str(jwk.get("kid", ""))] = jwk
            if not jwks:
                raise Unavailable(f"the key set at {uri} has no signing keys")
        finally:
            # Also on failure: an unknown kid must not refetch at once again.
            self._fetched_at = started
        if set(jwks) != set(self._jwks):
            log.info("signing keys of %s: %s", self.url, ", ".join(sorted(jwks)))
        old, self._jwks = self._jwks, jwks
        # Keys made from a JWK that changed or went away are dropped with it.
        self._keys = {k: v for k, v in self._keys.items() if old.get(k[0]) == jwks.get(k[0])}

    # --- HTTP ------------------------------------------------------------------
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            ssl_context: ssl.SSLContext | bool = True
            if self._settings.ca_file:
                ssl_context = ssl.create_default_context(cafile=self._settings.ca_file)
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S),
                connector=aiohttp.TCPConnector(ssl=ssl_context),
                trust_env=False,
            )
        return self._session

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        return await self.request_json(
            lambda s: s.get(url, headers={"Accept": "application/json"}), url, what
        )

    async def request_json(
        self,
        send: Callable[[aiohttp.ClientSession], Awaitable[aiohttp.ClientResponse]],
        url: str,
        what: str,
    ) -> dict[str, Any]:
        """A JSON object from the issuer; Unavailable (retriable) for anything else."""
        try:
            async with await send(self.session()) as resp:
                body = await resp.content.read(MAX_DOCUMENT_BYTES + 1)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Unavailable(f"cannot reach the identity provider for its {what} ({url}): {exc}") from None
        if len(body) > MAX_DOCUMENT_BYTES:
            raise Unavailable(f"the {what} at {url} is larger than {MAX_DOCUMENT_BYTES} bytes")
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if status != 200 or not isinstance(doc, dict):
            # An OAuth error response names what is wrong (invalid_client, ...); say it.
            error = doc.get("error") if isinstance(doc, dict) else None
            said = f" ({str(error)[:80]})" if error else ""
            raise Unavailable(f"the identity provider answered its {what} ({url}) with HTTP {status}{said}")
        return doc
