"""Serves the built UI, with index.html for every client-side route."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

_IMMUTABLE = "public, max-age=31536000, immutable"
_REVALIDATE = "no-cache"


class UiFiles:
    def __init__(self, dist: Path) -> None:
        self._dist = dist.resolve()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        index = self._dist / "index.html"
        if not index.is_file():
            return web.Response(
                status=404, text=f"UI not built: {self._dist} has no index.html (run `make ui`)\n"
            )
        rel = request.match_info.get("tail", "")
        target = (self._dist / rel).resolve()
        if not target.is_relative_to(self._dist):
            raise web.HTTPNotFound()
        if target.is_file():
            # Vite puts content-hashed files under assets/: they never change.
            hashed = target.is_relative_to(self._dist / "assets")
            return web.FileResponse(target, headers={"Cache-Control": _IMMUTABLE if hashed else _REVALIDATE})
        if "." in rel.rsplit("/", 1)[-1]:
            # A missing file, not a page: index.html would only confuse the browser.
            raise web.HTTPNotFound()
        return web.FileResponse(index, headers={"Cache-Control": _REVALIDATE})
