"""The dashboard's page and assets: served from the package, offline, from a fixed list of files."""

from __future__ import annotations

import re
from importlib import resources

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tickercast.serve.dashboard import ASSETS, router

STATIC = resources.files("tickercast.serve").joinpath("static")


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    app.include_router(router)
    return TestClient(app)


def test_page_is_served_with_a_same_origin_policy(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert '<select id="ticker"' in response.text


def test_page_loads_nothing_from_elsewhere() -> None:
    """Every script, style sheet and icon the page names is one of the packaged assets."""
    html = STATIC.joinpath("index.html").read_text()
    referenced = re.findall(r'(?:src|href)="([^"]+)"', html)
    local = [ref for ref in referenced if ref.startswith("/static/")]
    assert local, "the page should load its script and styles from /static/"
    for ref in local:
        assert ref.removeprefix("/static/") in ASSETS, ref
    outside = [ref for ref in referenced if ref.startswith(("http:", "https:", "//"))]
    assert not outside, f"the page must work offline, but it references {outside}"
    script = STATIC.joinpath("app.js").read_text()
    assert not re.search(r"https?://", script), "app.js must only call this origin"


def test_every_asset_is_served_with_its_type_and_validates_with_its_etag(client: TestClient) -> None:
    for name, media_type in ASSETS.items():
        response = client.get(f"/static/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"] == media_type
        assert response.content == STATIC.joinpath(*name.split("/")).read_bytes()
        again = client.get(f"/static/{name}", headers={"If-None-Match": response.headers["etag"]})
        assert again.status_code == 304, name


def test_vendored_chart_library_ships_with_its_license() -> None:
    bundle = STATIC.joinpath("vendor", "uplot", "uPlot.iife.min.js").read_text()
    assert bundle.startswith("/*! https://github.com/leeoniya/uPlot")
    assert "MIT License" in STATIC.joinpath("vendor", "uplot", "LICENSE").read_text()


@pytest.mark.parametrize(
    "path",
    [
        "/static/index.html.bak",
        "/static/../dashboard.py",
        "/static/..%2F..%2Fpyproject.toml",
        "/static/%2e%2e/%2e%2e/config.py",
        "/static/vendor/uplot/uPlot.d.ts",
        "/static/",
    ],
)
def test_unknown_asset_paths_are_404_never_files(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert b"import" not in response.content and b"[project]" not in response.content
