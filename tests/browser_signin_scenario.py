"""Sign-in with accounts in headless Chromium, run inside a network namespace by
tests/test_browser_signin.py:

    unshare -n -- python -m tests.browser_signin_scenario

Accounts are added with the real CLI (`commandcenter user add --password-stdin`), then the
real server is started and pages are driven as a person would: the client without a token
sends them to the sign-in page (in Chinese), a wrong password is refused there, the right one
signs them in and the client connects; F5 keeps them signed in; an account with a second
factor is asked for its code; sign-out ends it. Screenshots of the sign-in page at
1920x1080 and 390x844 go to build/screenshots/. Prints ONE JSON line with what each step saw.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pyotp
from playwright.async_api import Browser, Page
from playwright.async_api import Error as PlaywrightError

from tests.browser import REPO, SECRET, ServerProcess, drive_with_server, until

OFFICER, OPERATOR = "o-1", "op-1"
PASSWORD = "a password long enough"
SCREENSHOTS = REPO / "build" / "screenshots"
SIZES = {"console": (1920, 1080), "phone": (390, 844)}


def add_account(workdir: Path, user: str, role: str, *extra: str) -> dict[str, Any]:
    """`commandcenter user add` as an admin would run it, on the server's data."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMANDCENTER_")}
    env |= {
        "COMMANDCENTER_SERVER_DATA_DIR": str(workdir / "var"),
        "COMMANDCENTER_RECORDER_SQLITE_PATH": str(workdir / "trace.sqlite3"),
        "COMMANDCENTER_AUTH_JWT_SECRET": SECRET,
    }
    done = subprocess.run(
        [sys.executable, "-m", "commandcenter", "user", "add", "--user", user,
         "--name", f"{role} {user}", "--role", role, "--court", "P0101",
         "--password-stdin", *extra],
        input=PASSWORD + "\n", capture_output=True, text=True, env=env, cwd=workdir,
        timeout=60, check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def state(page: Page) -> dict[str, Any]:
    """The client's state, or {} while the page is between two documents (a redirect)."""
    try:
        found: dict[str, Any] = await page.evaluate("window.cc ? window.cc.state() : {}")
    except PlaywrightError:
        return {}
    return found


async def signed_in_as(page: Page, user: str) -> bool:
    s = await state(page)
    return bool(s.get("connected")) and (s.get("user") or {}).get("id") == user


async def on_signin_page(page: Page) -> bool:
    try:
        return "/app/signin.html" in page.url and await page.locator("#signin").count() == 1
    except PlaywrightError:
        return False


async def message(page: Page) -> str:
    return (await page.locator("#message").text_content() or "").strip()


async def fill_and_submit(page: Page, user: str, password: str, code: str | None = None) -> None:
    await page.fill("#user", user)
    await page.fill("#password", password)
    if code is not None:
        await page.fill("#code", code)
    await page.click("#submit")


async def run(workdir: Path) -> dict[str, Any]:
    add_account(workdir, OFFICER, "officer")
    totp = add_account(workdir, OPERATOR, "operator", "--totp")

    async def go(browser: Browser, base: str, result: dict[str, Any]) -> None:
        result.update(await drive(browser, base, totp["totp_secret"]))

    return await drive_with_server(ServerProcess(workdir), go)


async def drive(browser: Any, base: str, totp_secret: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for label, (width, height) in SIZES.items():
        context = await browser.new_context(viewport={"width": width, "height": height})
        page = await context.new_page()
        await page.goto(f"{base}/app/signin.html", timeout=10_000)
        await page.screenshot(path=str(SCREENSHOTS / f"signin-{label}.png"))
        await context.close()

    context = await browser.new_context()
    page = await context.new_page()
    # No token and no sign-in yet: the client sends the person to the sign-in page.
    await page.goto(f"{base}/app/index.html", timeout=10_000)
    await until(lambda: on_signin_page(page), within=10, what="sent to the sign-in page")
    seen["redirected_to"] = page.url.removeprefix(base)
    seen["heading"] = await page.locator("h2").text_content()
    seen["code_field_visible_at_first"] = await page.locator("#code").is_visible()
    await fill_and_submit(page, OFFICER, "not the password at all")
    seen["wrong_password_message"] = await until(
        lambda: message(page), within=10, what="a refusal shown"
    )
    await fill_and_submit(page, OFFICER, PASSWORD)
    await until(lambda: signed_in_as(page, OFFICER), within=10, what="officer connected")
    seen["signed_in_url"] = page.url.removeprefix(base)
    # F5: the token is gone with the page; the cookie brings the person back in.
    await page.reload()
    await until(lambda: signed_in_as(page, OFFICER), within=10, what="connected after F5")
    seen["after_reload"] = (await state(page))["user"]["id"]
    await page.click("#signout")
    await until(lambda: on_signin_page(page), within=10, what="back at sign-in after sign-out")
    seen["token_after_signout"] = await page.evaluate(
        "fetch('/api/session/token', {method: 'POST'}).then(r => r.status)"
    )
    await context.close()

    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{base}/app/signin.html?lang=en", timeout=10_000)
    seen["english_heading"] = await page.locator("h2").text_content()
    await fill_and_submit(page, OPERATOR, PASSWORD)
    seen["code_asked"] = await until(lambda: message(page), within=10, what="the code asked for")
    seen["code_field_visible"] = await page.locator("#code").is_visible()
    await page.fill("#code", pyotp.TOTP(totp_secret).now())
    await page.click("#submit")
    await until(lambda: signed_in_as(page, OPERATOR), within=10, what="operator connected")
    seen["operator_signed_in"] = True
    await context.close()
    return seen


def main() -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory(prefix="cc-signin-") as tmp:
        result = asyncio.run(run(Path(tmp)))
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
