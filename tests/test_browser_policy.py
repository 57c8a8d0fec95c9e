"""Browser policy at the HTTP edge: which pages may open the WebSocket (Origin), and the
security headers of the pages under /app/."""

from __future__ import annotations

import aiohttp
import pytest

from commandcenter.browser_policy import CONTENT_SECURITY_POLICY, cache_control
from commandcenter.config import ConfigError, load_config
from commandcenter.origins import allowed_origins, normalised_origin
from tests.conftest import Serve
from tests.wsclient import Server


@pytest.mark.parametrize(
    ("value", "origin"),
    [
        ("https://Console.Court.example", "https://console.court.example"),
        ("https://console.court.example:443", "https://console.court.example"),
        ("http://127.0.0.1:80/", "http://127.0.0.1"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("null", None),
        ("file://", None),
        ("https://a.example/path", None),
        ("https://user@a.example", None),
        ("https://a.example:99999", None),
        ("javascript:alert(1)", None),
    ],
)
def test_origins_are_compared_in_one_spelling(value: str, origin: str | None) -> None:
    assert normalised_origin(value) == origin


def test_a_configured_origin_that_is_not_one_is_a_config_error() -> None:
    assert allowed_origins(["https://a.example:443"]) == frozenset({"https://a.example"})
    env = {"COMMANDCENTER_SERVER_ALLOWED_ORIGINS": '["console.court.example"]'}
    with pytest.raises(ConfigError, match=r"server\.allowed_origins"):
        load_config(None, env)


async def _upgrade(server: Server, origin: str | None) -> int | str:
    """The upgrade's outcome: "welcome" or the HTTP status it was refused with."""
    token = server.token("o1", "officer", "P0101")
    headers = {"Origin": origin} if origin is not None else {}
    try:
        ws = await server.http.ws_connect("/ws", params={"token": token}, headers=headers)
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status
    msg = await ws.receive_json(timeout=5.0)
    await ws.close()
    return str(msg["type"])


async def test_a_page_of_another_site_may_not_open_the_websocket(server: Server) -> None:
    """Refused 403 before the upgrade, with a valid token all the same; nothing recorded."""
    for origin in ("https://evil.example", "null", "http://127.0.0.1.evil.example"):
        assert await _upgrade(server, origin) == 403
    assert server.recorder.of_kind("sign_in") == []


async def test_our_own_pages_and_clients_without_origin_may(server: Server) -> None:
    own = f"http://{server.http.host}:{server.http.port}"
    assert await _upgrade(server, own) == "welcome"
    assert await _upgrade(server, f"{own}/") == "welcome"
    assert await _upgrade(server, None) == "welcome"


async def test_behind_a_tls_proxy_the_public_https_origin_is_our_own(server: Server) -> None:
    """The proxy forwards Host; the page's Origin is https, the server sees http."""
    token = server.token("o1", "officer", "P0101")
    for host, origin, allowed in (
        ("console.court.example", "https://console.court.example", True),
        ("console.court.example:443", "https://console.court.example", True),
        ("console.court.example:8443", "https://console.court.example:8443", True),
        ("console.court.example", "https://evil.example", False),
        ("console.court.example", "https://console.court.example:8443", False),
    ):
        resp = await server.http.get(
            "/ws", params={"token": token}, headers={"Origin": origin, "Host": host}
        )
        assert (resp.status != 403) is allowed, (host, origin, resp.status)


async def test_a_configured_origin_may(serve: Serve) -> None:
    server = await serve(server={"allowed_origins": ["https://console.court.example"]})
    assert await _upgrade(server, "https://console.court.example") == "welcome"
    assert await _upgrade(server, "https://other.court.example") == 403


async def test_the_refusal_says_why(server: Server) -> None:
    resp = await server.http.get("/ws", headers={"Origin": "https://evil.example"})
    assert resp.status == 403
    body = await resp.json()
    assert (body["error"], body["field"]) == ("forbidden_origin", "origin")


async def test_pages_carry_a_content_security_policy(server: Server) -> None:
    for page in ("/app/index.html", "/app/conference.html", "/app/client.js"):
        resp = await server.http.get(page)
        assert resp.status == 200, page
        assert resp.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY


async def test_pages_are_revalidated_and_built_assets_kept(server: Server) -> None:
    resp = await server.http.get("/app/index.html")
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.headers["ETag"]
    assert cache_control("/app/console/assets/index-3f9a1c0e.js") == (
        "public, max-age=31536000, immutable"
    )
    assert cache_control("/app/console/index.html") == "no-cache"


async def test_a_missing_page_is_a_404_page_not_an_octet_stream(server: Server) -> None:
    resp = await server.http.get("/app/nope.js")
    assert resp.status == 404
    assert resp.content_type == "text/html"
    assert "页面不存在" in await resp.text()
    assert resp.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "Cache-Control" not in resp.headers
    # Elsewhere a missing route is still the API's own answer.
    other = await server.http.get("/api/nope")
    assert other.status == 404
    assert other.content_type != "text/html"
