"""The OpenAPI document (commandcenter/openapi.json): valid OpenAPI 3.1, describing exactly
the routes the server has (a route added without documentation fails here, and so does a
documented path that is gone), and served at /api/openapi.json to any valid token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp import web
from openapi_spec_validator import validate
from pytest_aiohttp import AiohttpClient

from commandcenter.app import create_app
from commandcenter.http_api import OPENAPI_FILE, OPENAPI_PATH
from tests.conftest import make_config
from tests.wsclient import token_for

METHODS = frozenset({"get", "put", "post", "delete", "patch", "options", "trace"})


def document() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(OPENAPI_FILE.read_text())
    return doc


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in METHODS
    }


def routed(app: web.Application) -> set[tuple[str, str]]:
    """Every (method, path) the app routes, but the web client's static files (code, not an
    API) and the HEAD that aiohttp adds beside every GET (the document says so once)."""
    found = set()
    for route in app.router.routes():
        resource = route.resource
        if resource is None or isinstance(resource, web.StaticResource):
            continue
        if route.method == "HEAD":
            continue
        found.add((route.method, resource.canonical))
    return found


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1.")
    validate(doc)


def test_every_route_is_documented_and_every_documented_path_is_a_route(tmp_path: Path) -> None:
    # The durable trace (the default) serves evidence too: the app with every route.
    app = create_app(make_config(tmp_path / "var"))
    routes = routed(app)
    assert ("POST", "/api/evidence") in routes
    doc = documented(document())
    assert routes - doc == set(), "routes missing from commandcenter/openapi.json"
    assert doc - routes == set(), "documented in commandcenter/openapi.json, but no such route"


def test_every_operation_documents_its_errors() -> None:
    """Every operation names its refusals: 503 (at least the connection caps), 401 where a
    token is needed, 500 where a handler of ours can fail, and a description for each."""
    doc = document()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            where = f"{method.upper()} {path}"
            responses = op["responses"]
            assert "503" in responses, where
            if op.get("security", doc["security"]) == doc["security"]:
                assert "401" in responses, where
            if path.startswith("/api/"):
                assert "500" in responses, where
            assert op.get("operationId"), where


async def test_the_document_is_served_to_any_valid_token(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    config = make_config(tmp_path / "var")
    client = await aiohttp_client(create_app(config))
    async with client.get(OPENAPI_PATH) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"] == "unauthorized"
    async with client.get(OPENAPI_PATH, headers={"Authorization": "Bearer nonsense"}) as resp:
        assert resp.status == 401
    token = token_for(config, "o1", "officer", "P0101")
    async with client.get(OPENAPI_PATH, headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        assert await resp.json() == document()
