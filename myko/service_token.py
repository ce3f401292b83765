"""A service's own access token (OAuth 2.0 client credentials), renewed ahead of expiry.

saga_svc sends its commands as itself, not as whoever caused the event: it
asks the issuer's token endpoint (found by discovery) for a token for Myko's
audience and keeps using it until RENEW_FRACTION of its lifetime has passed.
The audience is asked for with both `resource` (RFC 8707; what oidc-provider
needs to issue a JWT for it) and `audience` (what some providers use instead).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from urllib.parse import quote

import aiohttp

from myko.errors import Unavailable
from myko.oidc import Issuer
from myko.settings import AuthSettings, ClientCredentials

log = logging.getLogger(__name__)

# Renew once this much of a token's lifetime has passed (a 60 s token: after 45 s).
RENEW_FRACTION = 0.75
# Never use a token in its last seconds: a call may take that long to arrive.
MIN_REMAINING_S = 5.0


class ServiceToken:
    def __init__(
        self,
        settings: AuthSettings,
        credentials: ClientCredentials,
        *,
        issuer: Issuer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._credentials = credentials
        self._issuer = issuer or Issuer(settings)
        self._owns_issuer = issuer is None
        self._clock = clock
        self._token: str | None = None
        self._renew_at = 0.0
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        now = self._clock()
        if self._token is not None and now < self._renew_at:
            return self._token
        async with self._lock:
            now = self._clock()
            if self._token is None or now >= self._renew_at:
                try:
                    await self._fetch()
                except Unavailable:
                    # The current one still works for a while: keep it rather than fail calls.
                    if self._token is None or now >= self._expires_at - MIN_REMAINING_S:
                        raise
                    log.warning(
                        "cannot renew %s's token yet; using the current one", self._credentials.client_id
                    )
            assert self._token is not None
            return self._token

    async def _fetch(self) -> None:
        endpoint = await self._issuer.token_endpoint()
        form = {
            "grant_type": "client_credentials",
            "resource": self._settings.audience,
            "audience": self._settings.audience,
        }
        if self._credentials.scope:
            form["scope"] = self._credentials.scope
        # client_secret_basic: each part form-encoded first (RFC 6749 §2.3.1).
        basic = aiohttp.encode_basic_auth(
            quote(self._credentials.client_id, safe=""), quote(self._credentials.client_secret, safe="")
        )
        headers = {"Accept": "application/json", "Authorization": basic}
        started = self._clock()
        doc = await self._issuer.request_json(
            lambda s: s.post(endpoint, data=form, headers=headers),
            endpoint,
            f"token for client {self._credentials.client_id!r}",
        )
        token = doc.get("access_token")
        lifetime = doc.get("expires_in")
        if not isinstance(token, str) or not token:
            raise Unavailable(f"the token endpoint {endpoint} answered no access_token")
        if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
            lifetime = 60.0  # unknown: renew soon rather than use a dead token
        self._token = token
        self._expires_at = started + float(lifetime)
        self._renew_at = started + float(lifetime) * RENEW_FRACTION
        log.info(
            "got a token for %s, valid %ds (renewing after %ds)",
            self._credentials.client_id,
            lifetime,
            int(float(lifetime) * RENEW_FRACTION),
        )

    async def close(self) -> None:
        if self._owns_issuer:
            await self._issuer.close()
