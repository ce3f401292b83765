"""GET /myko-auth.json: how the UI the gateway serves signs in.

    {"issuer": "http://127.0.0.1:8090", "clientId": "myko-ui", "scope": "openid profile", "audience": "urn:myko:api"}
    {"disabled": true}                       # MYKO_AUTH_DISABLED=true: no sign-in

The UI (ui/src/lib/auth.svelte.ts) reads it once at start, so one build of it
works against any issuer: the local identity provider under `make run`, the
browser tests' own, or a production one named by MYKO_OIDC_ISSUER. The values
are public (the UI is a public OAuth client); nothing secret is served.
"""

from __future__ import annotations

from aiohttp import web

from myko.settings import GatewaySettings


class UiAuth:
    def __init__(self, settings: GatewaySettings) -> None:
        auth = settings.auth
        if auth.enabled:
            self._body: dict[str, object] = {
                "issuer": auth.issuer,
                "clientId": settings.ui_client_id,
                "scope": settings.ui_scope,
                "audience": auth.audience,
            }
        else:
            self._body = {"disabled": True}

    async def handle(self, request: web.Request) -> web.Response:
        # Revalidated: a restarted stack may name another issuer.
        return web.json_response(self._body, headers={"Cache-Control": "no-cache"})
