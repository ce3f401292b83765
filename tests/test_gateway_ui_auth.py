"""GET /myko-auth.json: the gateway tells the UI it serves how to sign in (or that there is no sign-in)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from myko.gateway.server import Gateway
from myko.local.idp import LocalIdp
from myko.local.idp_tokens import IdpTokens
from myko.settings import AuthSettings, GatewaySettings


@asynccontextmanager
async def gateway(auth: AuthSettings) -> AsyncIterator[str]:
    # No backends are called: the addresses only have to parse.
    settings = GatewaySettings(port=0, ui_dist="/nonexistent", auth=auth)
    gw = Gateway(settings)
    await gw.start()
    try:
        yield f"http://127.0.0.1:{gw.port}"
    finally:
        await gw.stop()


async def get_config(base: str) -> tuple[dict[str, object], str]:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/myko-auth.json") as resp:
        assert resp.status == 200
        return await resp.json(), resp.headers.get("Cache-Control", "")


async def test_without_auth_the_ui_is_told_there_is_no_sign_in() -> None:
    async with gateway(AuthSettings.off()) as base:
        body, cache = await get_config(base)
    assert body == {"disabled": True}
    assert cache == "no-cache"


async def test_with_an_issuer_the_ui_gets_what_it_needs_to_sign_in_there(local_idp: LocalIdp) -> None:
    auth = AuthSettings(issuer=local_idp.issuer, audience=local_idp.audience)
    async with gateway(auth) as base:
        body, _ = await get_config(base)
    assert body == {
        "issuer": local_idp.issuer,
        "clientId": "myko-ui",
        "scope": "openid profile",
        "audience": local_idp.audience,
    }
    # What the UI does with it: the code + PKCE sign-in at that issuer, as that client.
    tokens = IdpTokens(
        issuer=str(body["issuer"]),
        ui_client_id=str(body["clientId"]),
        redirect_uri=local_idp.tokens.redirect_uri,
    )
    assert tokens.sign_in("dave", "demo").access_token
