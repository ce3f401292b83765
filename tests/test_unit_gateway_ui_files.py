"""Unit tests: the gateway's UI file server answers pages with index.html and nothing else with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from myko.gateway.ui_files import UiFiles


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    (tmp_path / "index.html").write_text("<html>app</html>")
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "app-1234.js").write_text("js")
    return tmp_path


async def _get(files: UiFiles, rel: str, raw_path: str = "") -> int:
    request = make_mocked_request("GET", raw_path or "/" + rel, match_info={"tail": rel})
    try:
        response = await files.handle(request)
    except web.HTTPException as e:
        return e.status
    assert isinstance(response, web.FileResponse)
    return response.status


async def test_client_side_routes_get_the_page_and_files_themselves(dist: Path) -> None:
    files = UiFiles(dist)
    assert await _get(files, "") == 200
    assert await _get(files, "zones/z1") == 200
    assert await _get(files, "assets/app-1234.js") == 200


async def test_missing_files_and_rpc_paths_are_not_pages(dist: Path) -> None:
    files = UiFiles(dist)
    assert await _get(files, "assets/gone.js") == 404
    # What a GET of an RPC path gets, whether or not a UI is built (tests/hostile/cases.py).
    assert await _get(files, "myko.v1.RepoService/Get") == 404
    assert await _get(files, "myko.v1.CommandBus/Execute") == 404
    # A percent-encoded byte that is not UTF-8 names no file and no page.
    assert await _get(files, "%ff", raw_path="/%ff") == 404
    assert await _get(files, "zones/a%b", raw_path="/zones/a%25b") == 200
