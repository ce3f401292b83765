"""Serves the built UI, with index.html for every client-side route."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import unquote_to_bytes

from aiohttp import web

log = logging.getLogger(__name__)
_IMMUTABLE = "public, max-age=31536000, immutable"
_REVALIDATE = "no-cache"


class UiFiles:
    def __init__(self, dist: Path) -> None:
        self._dist = dist.resolve()
        if not (self._dist / "index.html").is_file():
            log.warning("no UI at %s (no index.html): serving the API only", self._dist)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        index = self._dist / "index.html"
        if not index.is_file():
            # The operator's log says where it was looked for (Gateway.start); callers learn no paths.
            return web.Response(
                status=404,
                text="UI not built (build it: `npm run build` in the app's ui/ folder; "
                "in the Myko repository, `make ui-build`)\n",
            )
        rel = request.match_info.get("tail", "")
        try:
            unquote_to_bytes(request.raw_path.split("?", 1)[0]).decode("utf-8")
        except UnicodeDecodeError:
            # A percent-encoded byte that is not UTF-8 (`/%ff`): no file or page has it.
            raise web.HTTPNotFound() from None
        try:
            target = self._file_for(rel)
        except (OSError, ValueError):
            # A NUL byte, an over-long name, ...: no file can have it.
            raise web.HTTPNotFound() from None
        if target is not None:
            # Vite puts content-hashed files under assets/: they never change.
            hashed = target.is_relative_to(self._dist / "assets")
            return web.FileResponse(target, headers={"Cache-Control": _IMMUTABLE if hashed else _REVALIDATE})
        if "." in rel.rsplit("/", 1)[-1] or "." in rel.split("/", 1)[0]:
            # A missing file, or an RPC path (`/myko.v1.RepoService/Get`), not a page:
            # index.html would only confuse the caller.
            raise web.HTTPNotFound()
        return web.FileResponse(index, headers={"Cache-Control": _REVALIDATE})

    def _file_for(self, rel: str) -> Path | None:
        if "\x00" in rel:
            raise ValueError("NUL in path")
        target = (self._dist / rel).resolve()
        if not target.is_relative_to(self._dist):
            raise ValueError("outside the UI directory")
        return target if target.is_file() else None
