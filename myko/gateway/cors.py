"""Cross-origin access from configured origins (MYKO_GATEWAY_CORS_ORIGINS).

The UI is served by the gateway itself (same origin, no CORS needed); this is
for a UI dev server or another site calling the API. grpc-web clients read the
status from grpc-status/grpc-message, so those are exposed.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

_EXPOSED = ("grpc-status", "grpc-message", "grpc-status-details-bin")
_STANDARD = frozenset(
    {"content-type", "content-length", "cache-control", "date", "server", "transfer-encoding", "vary"}
)
_MAX_AGE_S = 600


class Cors:
    def __init__(self, origins: Iterable[str]) -> None:
        self._origins = frozenset(origins)
        self._any = "*" in self._origins

    def allows(self, origin: str) -> bool:
        return self._any or origin.rstrip("/") in self._origins

    async def on_response_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get("Origin")
        if not origin or not self.allows(origin) or "Access-Control-Allow-Origin" in response.headers:
            return
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers.add("Vary", "Origin")
        custom = [k.lower() for k in response.headers if k.lower() not in _STANDARD]
        exposed = dict.fromkeys([*_EXPOSED, *(k for k in custom if not k.startswith("access-control-"))])
        response.headers["Access-Control-Expose-Headers"] = ", ".join(exposed)

    async def preflight(self, request: web.Request) -> web.Response:
        origin = request.headers.get("Origin", "")
        if not origin or not self.allows(origin):
            return web.Response(status=403, text="origin not allowed")
        headers = {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
            # Custom metadata travels as headers, so every requested header is allowed.
            "Access-Control-Allow-Headers": request.headers.get(
                "Access-Control-Request-Headers", "content-type, x-grpc-web, x-user-agent, grpc-timeout"
            ),
            "Access-Control-Max-Age": str(_MAX_AGE_S),
            "Vary": "Origin",
        }
        return web.Response(status=204, headers=headers)
