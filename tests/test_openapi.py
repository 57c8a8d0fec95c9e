"""The OpenAPI document (commandcenter/openapi.json): valid OpenAPI 3.1, describing exactly
the routes the server has (a route added without documentation fails here, and so does a
documented path that is gone), and served at /api/openapi.json to any valid token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse, web
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from pytest_aiohttp import AiohttpClient

from commandcenter.app import create_app
from commandcenter.http_api import OPENAPI_FILE, OPENAPI_PATH
from tests.conftest import make_config
from tests.evidencehelpers import CASE, correct, start_api
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


# ---- real answers match the document ---------------------------------------------------------


class Conformance:
    """Checks real answers against the document: the status is one the operation names,
    and a JSON body satisfies the schema documented for it."""

    def __init__(self) -> None:
        self.doc = document()
        self.checked: set[tuple[str, str, str]] = set()

    def _resolve(self, obj: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in obj:
            target: Any = self.doc
            for part in obj["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            obj = target
        return obj

    async def check(self, method: str, path: str, resp: ClientResponse) -> Any:
        op = self.doc["paths"][path][method.lower()]
        status = str(resp.status)
        assert status in op["responses"], f"{method} {path}: {status} is not documented"
        answer = self._resolve(op["responses"][status])
        self.checked.add((method, path, status))
        if resp.content_type != "application/json":
            assert resp.content_type in answer.get("content", {}) or "*/*" in answer.get(
                "content", {}
            ), f"{method} {path} {status}: {resp.content_type} is not documented"
            return None
        body = await resp.json()
        schema = answer["content"]["application/json"]["schema"]
        # The document as the root, so that its "#/components/..." references resolve.
        OAS31Validator({**schema, "components": self.doc["components"]}).validate(body)
        return body


async def test_real_answers_have_documented_statuses_and_bodies(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    api = await start_api(aiohttp_client, tmp_path, metrics={"token": "t" * 24})
    http = api.http
    c = Conformance()
    auditor = api.auth("au1", "auditor", "P")
    await c.check("GET", "/healthz", await http.get("/healthz"))
    await c.check("GET", "/readyz", await http.get("/readyz"))
    await c.check("GET", OPENAPI_PATH, await http.get(OPENAPI_PATH, headers=auditor))
    await c.check("GET", OPENAPI_PATH, await http.get(OPENAPI_PATH))
    await c.check("GET", "/metrics", await http.get("/metrics"))
    # Statistics: figures as JSON and CSV, and each refusal.
    period = {"from": "2026-01-01", "to": "2026-02-01"}
    stats = "/api/stats"
    await c.check("GET", stats, await http.get(stats, params=period, headers=auditor))
    csv = {**period, "format": "csv"}
    await c.check("GET", stats, await http.get(stats, params=csv, headers=auditor))
    await c.check("GET", stats, await http.get(stats, params={"to": "x"}, headers=auditor))
    await c.check("GET", stats, await http.get(stats, params=period, headers=api.auth("o1")))
    await c.check("GET", stats, await http.get(stats, params=period))
    # Evidence: upload, again, list, read, download, correct, and refusals.
    created = await c.check("POST", "/api/evidence", await api.upload("o1"))
    item = f"/api/evidence/{created['evidence_id']}"
    await c.check("POST", "/api/evidence", await api.upload("o1"))
    await c.check("POST", "/api/evidence", await api.upload("o1", sha256="0" * 64))
    gzip = {"Content-Encoding": "gzip"}
    await c.check("POST", "/api/evidence", await api.upload("o1", headers=gzip))
    await c.check("POST", "/api/evidence", await api.upload("op1", role="auditor"))
    listing = await http.get("/api/evidence", params={"case": CASE}, headers=api.auth("o1"))
    await c.check("GET", "/api/evidence", listing)
    await c.check("GET", "/api/evidence", await api.get("/api/evidence", "o1"))
    await c.check("GET", "/api/evidence/{evidence_id}", await api.get(item, "o1"))
    unknown = "/api/evidence/ev-" + "0" * 32
    await c.check("GET", "/api/evidence/{evidence_id}", await api.get(unknown, "o1"))
    content = "/api/evidence/{evidence_id}/content"
    await c.check("GET", content, await api.get(f"{item}/content", "o1"))
    fix = {"changes": {"file_name": "door.jpg"}, "reason": "the file was misnamed"}
    corrections = "/api/evidence/{evidence_id}/corrections"
    await c.check(
        "POST",
        corrections,
        await correct(api, created["evidence_id"], "o1", "officer", "P0101", fix),
    )
    await c.check(
        "POST", corrections, await correct(api, created["evidence_id"], "au1", "auditor", "P", fix)
    )
    # An officer's track: empty here (nobody reported), a bad parameter, a refused role.
    track = "/api/officers/{user_id}/track"
    await c.check("GET", track, await http.get("/api/officers/o1/track", headers=auditor))
    bad = {"from": "yesterday"}
    await c.check(
        "GET", track, await http.get("/api/officers/o1/track", params=bad, headers=auditor)
    )
    await c.check("GET", track, await api.get("/api/officers/o1/track", "o1"))
    assert len(c.checked) >= 20


async def test_the_records_answers_have_documented_statuses_and_bodies(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """The console's records routes (evidence search and trail, chain check, calls, the
    statistics series) answer as documented, refusals included."""
    api = await start_api(aiohttp_client, tmp_path)
    http = api.http
    c = Conformance()
    auditor = api.auth("au1", "auditor", "P")
    created = await c.check("POST", "/api/evidence", await api.upload("o1"))
    period = {"from": "2020-01-01", "to": "2099-01-01"}
    search = await http.get("/api/evidence", params={"court": "P01"}, headers=auditor)
    found = await c.check("GET", "/api/evidence", search)
    assert found["total"] == 1
    bad = await http.get("/api/evidence", params={"limit": "0"}, headers=auditor)
    await c.check("GET", "/api/evidence", bad)
    trail = "/api/evidence/{evidence_id}/audit"
    item = f"/api/evidence/{created['evidence_id']}/audit"
    await c.check("GET", trail, await http.get(item, headers=auditor))
    await c.check("GET", trail, await api.get(item, "op2", "operator", "P0102"))
    await c.check("GET", trail, await http.get(item))
    await c.check(
        "POST", "/api/trace/verify", await http.post("/api/trace/verify", headers=auditor)
    )
    await c.check(
        "POST", "/api/trace/verify", await http.post("/api/trace/verify", headers=api.auth("o1"))
    )
    calls = await http.get("/api/calls", params=period | {"to": "2020-02-01"}, headers=auditor)
    await c.check("GET", "/api/calls", calls)
    await c.check("GET", "/api/calls", await http.get("/api/calls", headers=auditor))
    await c.check(
        "GET", "/api/calls", await http.get("/api/calls", params=period, headers=api.auth("o1"))
    )
    audit = "/api/calls/{call_id}/audit"
    await c.check("GET", audit, await http.get("/api/calls/c-none/audit", headers=auditor))
    series = period | {"to": "2020-02-01", "series": "day,court", "explain": "true"}
    await c.check("GET", "/api/stats", await http.get("/api/stats", params=series, headers=auditor))
    assert len(c.checked) >= 12
