"""Single sign-on against an OpenID Connect provider the test starts: the whole redirect
round trip on the real app, the account rules, and every way the provider's answer can be
wrong refused and recorded."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from commandcenter.account_api import ACCOUNTS, COOKIE
from commandcenter.config import ConfigError, load_config
from commandcenter.oidc import Flow, OidcFailure, safe_next, seal, unseal
from identity.accounts import Account
from identity.people import Role
from tests.conftest import Serve
from tests.oidchelpers import CLIENT_ID, CLIENT_SECRET, IdentityProvider
from tests.wsclient import Server


@pytest.fixture
async def provider(aiohttp_server: AiohttpServer) -> IdentityProvider:
    p = IdentityProvider()
    server: TestServer = await aiohttp_server(p.app())
    p.issuer = str(server.make_url("")).rstrip("/")
    return p


async def sso_server(serve: Serve, provider: IdentityProvider) -> Server:
    server = await serve(
        oidc={"issuer": provider.issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    )
    await server.http.app[ACCOUNTS].store.save(
        Account("o-1", "张警官", Role.OFFICER, "P0101", password_hash="")
    )
    return server


async def round_trip(server: Server, next_page: str = "/app/phone.html") -> aiohttp.ClientResponse:
    """Start at our server, follow the provider's redirect and back, stop at our answer."""
    http = server.http
    start = await http.get(
        "/api/session/oidc/start", params={"next": next_page}, allow_redirects=False
    )
    assert start.status == 302, await start.text()
    # The provider answers at once (no login page) with a redirect to our callback.
    async with (
        aiohttp.ClientSession() as browser,
        browser.get(start.headers["Location"], allow_redirects=False) as at_provider,
    ):
        assert at_provider.status == 302
        back = at_provider.headers["Location"]
    callback = back.split("127.0.0.1", 1)[1].split("/", 1)[1]
    return await http.get("/" + callback, allow_redirects=False)


async def test_a_person_the_provider_knows_signs_in_and_keeps_the_sign_in(
    serve: Serve, provider: IdentityProvider
) -> None:
    server = await sso_server(serve, provider)
    methods = await (await server.http.get("/api/session/methods")).json()
    assert methods == {"password": True, "oidc": True}
    answer = await round_trip(server)
    assert answer.status == 302
    assert answer.headers["Location"] == "/app/phone.html"
    assert answer.cookies[COOKIE]["httponly"]
    token = await server.http.post("/api/session/token")
    assert token.status == 200
    body = await token.json()
    assert body["user"] == {"id": "o-1", "name": "张警官", "role": "officer", "court": "P0101"}
    ws = await server.open("o-1", token=body["token"])
    await ws.expect("welcome")
    await server.wait_recorded("account_signed_in", user="o-1", method="oidc")


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        ("nonce", "oidc_token"),
        ("audience", "oidc_token"),
        ("expired", "oidc_token"),
        ("signature", "oidc_token"),
    ],
)
async def test_an_id_token_that_is_wrong_in_any_way_signs_nobody_in(
    serve: Serve, provider: IdentityProvider, tamper: str, code: str
) -> None:
    server = await sso_server(serve, provider)
    provider.tamper = tamper
    answer = await round_trip(server)
    assert answer.status == 302
    assert answer.headers["Location"] == f"/app/signin.html?error={code}"
    assert COOKIE not in answer.cookies or not answer.cookies[COOKIE].value
    assert (await server.http.post("/api/session/token")).status == 401
    await server.wait_recorded("account_sign_in_failed", reason=code, method="oidc")


async def test_no_account_or_a_disabled_one_is_refused(
    serve: Serve, provider: IdentityProvider
) -> None:
    server = await sso_server(serve, provider)
    provider.user = "o-404"
    answer = await round_trip(server)
    assert answer.headers["Location"] == "/app/signin.html?error=oidc_no_account"
    store = server.http.app[ACCOUNTS].store
    await store.save(Account("o-2", "李", Role.OFFICER, "P0101", "", disabled=True))
    provider.user = "o-2"
    answer = await round_trip(server)
    assert answer.headers["Location"] == "/app/signin.html?error=disabled"


async def test_a_callback_this_browser_did_not_begin_is_refused(
    serve: Serve, provider: IdentityProvider
) -> None:
    server = await sso_server(serve, provider)
    start = await server.http.get("/api/session/oidc/start", allow_redirects=False)
    # Another browser (no flow cookie) arrives with the code and state.
    server.http.session.cookie_jar.clear()
    async with (
        aiohttp.ClientSession() as browser,
        browser.get(start.headers["Location"], allow_redirects=False) as at_provider,
    ):
        back = at_provider.headers["Location"]
    path = "/" + back.split("127.0.0.1", 1)[1].split("/", 1)[1]
    answer = await server.http.get(path, allow_redirects=False)
    assert answer.headers["Location"] == "/app/signin.html?error=oidc_no_flow"
    # The code was never exchanged.
    assert provider.token_requests == 0


async def test_without_a_provider_configured_there_is_no_single_sign_on(server: Server) -> None:
    methods = await (await server.http.get("/api/session/methods")).json()
    assert methods == {"password": True, "oidc": False}
    start = await server.http.get("/api/session/oidc/start", allow_redirects=False)
    assert start.status == 404


def test_a_flow_cookie_cannot_be_changed_or_kept_too_long() -> None:
    key = b"k" * 32
    flow = Flow("s", "n", "v", "/app/index.html", expires_at=100.0)
    assert unseal(seal(flow, key), key, now=50.0) == flow
    body, mac = seal(flow, key).rsplit(".", 1)
    with pytest.raises(OidcFailure, match="oidc_no_flow"):
        unseal(f"{body}x.{mac}", key, now=50.0)
    with pytest.raises(OidcFailure, match="oidc_expired"):
        unseal(seal(flow, key), key, now=101.0)
    assert safe_next("https://evil.example/") == "/app/index.html"
    assert safe_next("/app//evil.example") == "/app/index.html"
    assert safe_next("/app/console/index.html") == "/app/console/index.html"


def test_the_provider_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="must be an https:// URL"):
        load_config(None, {"COMMANDCENTER_OIDC_ISSUER": "http://idp.example"})
    with pytest.raises(ConfigError, match="client_secret: required"):
        load_config(None, {"COMMANDCENTER_OIDC_ISSUER": "https://idp.example"})
