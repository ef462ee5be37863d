"""Each service's interactive API docs load from the service itself, without internet access."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from baton.registry import SERVICES
from tests.support.openapi import InProcessService

pytestmark = pytest.mark.integration
DOC_PAGES = ("/docs", "/redoc")
# What a browser accepts for each kind of asset a page links.
CONTENT_TYPES = {"script": ("text/javascript", "application/javascript"),
                 "stylesheet": ("text/css",), "icon": ("image/",)}


class Assets(HTMLParser):
    """The scripts, stylesheets and icons a page loads, by kind."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Record the URL of a script with a source or of a linked stylesheet or icon."""
        attributes = dict(attrs)
        source = attributes.get("src")
        if tag == "script" and source:
            self.urls.append(("script", source))
        rel = (attributes.get("rel") or "").split()
        reference = attributes.get("href")
        for kind in ("stylesheet", "icon"):
            if tag == "link" and reference and kind in rel:
                self.urls.append((kind, reference))


def assets_of(page: str) -> list[tuple[str, str]]:
    """Return the kind and URL of each asset the HTML ``page`` loads."""
    parser = Assets()
    parser.feed(page)
    parser.close()
    return parser.urls


def is_local(url: str) -> bool:
    """Return whether ``url`` is a path on the host that served the page."""
    parts = urlsplit(url)
    return (parts.scheme, parts.netloc) == ("", "") and parts.path.startswith("/")


def app_of(service: str) -> FastAPI:
    """Return the service's app, wired as it runs (no database: the docs need none)."""
    return InProcessService.build(service).app


def served() -> dict[str, float]:
    """Return how many GET requests answered 200 the latency histogram has counted, by route."""
    return {sample.labels["route"]: sample.value
            for metric in REGISTRY.collect() for sample in metric.samples
            if sample.name == "baton_http_request_seconds_count"
            and sample.labels["method"] == "GET" and sample.labels["status"] == "200"}


@pytest.mark.parametrize("service", SERVICES)
async def test_the_docs_pages_load_every_asset_from_the_service(service: str) -> None:
    app = app_of(service)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{service}") as client:
        document = (await client.get("/openapi.json")).json()
        for page_path in DOC_PAGES:
            page = await client.get(page_path)
            assert page.status_code == 200, page_path
            assert page.headers["content-type"].startswith("text/html")
            assets = assets_of(page.text)
            assert [url for _, url in assets if not is_local(url)] == [], page_path
            # Nor any other host named elsewhere: fonts, a favicon, a script's own loads.
            assert re.findall(r"https?://\S*", page.text) == [], page_path
            kinds = {kind for kind, _ in assets}
            assert "script" in kinds, page_path
            if page_path == "/docs":
                assert "stylesheet" in kinds
            for kind, url in assets:
                asset = await client.get(url)
                assert asset.status_code == 200, url
                content_type = asset.headers["content-type"].split(";")[0]
                assert content_type.startswith(CONTENT_TYPES[kind]), (url, content_type)
                assert asset.content, url
                assert urlsplit(url).path not in document["paths"], url
    assert all(not path.startswith(DOC_PAGES) for path in document["paths"])


async def test_ingest_serves_the_docs_assets_and_counts_them_without_a_series_each() -> None:
    # Ingest: its own middleware checks bodies, and its capture routes want an API key.
    app = app_of("ingest")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
        urls = [url for _, url in assets_of((await client.get("/docs")).text)]
        before = served()
        answers = [await client.get(url) for url in urls]
    assert [answer.status_code for answer in answers] == [200] * len(urls)
    assert sum(served().values()) == sum(before.values()) + len(urls)
    assert not set(served()) & {urlsplit(url).path for url in urls}
