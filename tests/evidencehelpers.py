"""The evidence tests' shared parts: a real app (SQLite trace, evidence files under a
private data dir) served on loopback, and the requests the tests make of it."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from commandcenter.app import create_app
from commandcenter.config import Config
from commandcenter.keys import TRACE
from commandcenter.stores import evidence_dir
from sessions.store import StoredRecord
from tests.conftest import make_config
from tests.wsclient import token_for

# P0101's case: its number carries P0101's case code (config.toml, [[courts]]).
CASE = "(2025)粤0101执12号"
# A number that names no configured court: each court that binds evidence to it has a case
# of its own by that number.
UNCODED_CASE = "(2025)P0101执12号"
PHOTO = b"\xff\xd8\xff\xe0" + os.urandom(5000)
CAPTURE_MS = int(time.time() * 1000) - 60_000


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Api:
    """The app under test and the requests the tests make of it."""

    def __init__(self, http: TestClient[Any, Any], app: web.Application, config: Config) -> None:
        self.http = http
        self.app = app
        self.config = config
        self.dir = evidence_dir(config)

    def token(self, user: str, role: str = "officer", court: str = "P0101") -> str:
        return token_for(self.config, user, role, court)

    def auth(self, user: str, role: str = "officer", court: str = "P0101") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user, role, court)}"}

    async def upload(
        self,
        user: str | None,
        body: bytes | AsyncIterator[bytes] = PHOTO,
        *,
        role: str = "officer",
        court: str = "P0101",
        content_type: str = "image/jpeg",
        headers: Mapping[str, str] | None = None,
        expect100: bool = False,
        query: Mapping[str, str | None] | None = None,
        **params: str | None,
    ) -> ClientResponse:
        defaults: dict[str, str | None] = {
            "case": CASE,
            "kind": "photo",
            "sha256": sha(body) if isinstance(body, bytes) else None,
            "device": "phone-7",
            "capture_time": str(CAPTURE_MS),
            "file_name": "IMG_0001.jpg",
        }
        merged = {**defaults, **(query or {}), **params}
        values = {k: v for k, v in merged.items() if v is not None}
        all_headers = {"Content-Type": content_type, **(headers or {})}
        if user is not None:
            all_headers.update(self.auth(user, role, court))
        return await self.http.post(
            "/api/evidence", params=values, data=body, headers=all_headers, expect100=expect100
        )

    async def get(self, path: str, user: str, role: str = "officer", court: str = "P0101") -> Any:
        return await self.http.get(path, headers=self.auth(user, role, court))

    async def records(self, kind: str, **data: str) -> list[StoredRecord]:
        return await self.app[TRACE].find(kinds=[kind], data_equals=data or None)

    def files(self) -> list[str]:
        return sorted(p.name for p in self.dir.iterdir())


async def start_api(
    aiohttp_client: AiohttpClient, tmp_path: Path, **sections: dict[str, Any]
) -> Api:
    """The real app on the test config changed by `sections`, served on loopback."""
    config = make_config(tmp_path / "var", **sections)
    app = create_app(config)
    return Api(await aiohttp_client(app), app, config)


async def body_of(resp: ClientResponse) -> dict[str, Any]:
    data: dict[str, Any] = await resp.json()
    return data


async def uploaded(
    api: Api, user: str, data: bytes | AsyncIterator[bytes] = PHOTO, **kwargs: Any
) -> dict[str, Any]:
    resp = await api.upload(user, data, **kwargs)
    body = await body_of(resp)
    assert resp.status == 201, body
    return body


async def correct(
    api: Api, evidence_id: str, user: str, role: str, court: str, body: Any
) -> ClientResponse:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await api.http.post(
        f"/api/evidence/{evidence_id}/corrections",
        data=data,
        headers={**api.auth(user, role, court), "Content-Type": "application/json"},
    )
