"""Text instructions between the console and the officer's phone page in headless Chromium
against the real server, run inside a network namespace by tests/test_browser_instructions.py:

    unshare -n -- python -m tests.browser_instructions_scenario

An operator and an officer account are added with the real CLI; both sign in with their
passwords, the officer on the phone page at 390x844, the operator on the console at
1920x1080. The operator opens the officer's card and sends an instruction: the phone shows
it and the console shows it delivered; F5 on the phone before acknowledging shows it again;
the officer taps 收到 and the console shows it read. Then a court-wide instruction (全院指令)
goes the same way. After the server stops, `commandcenter audit verify` checks the trace,
and the trace's instruction records are listed. Screenshots go to
build/screenshots/instructions-*.png. Prints ONE JSON line with what each step saw.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Browser, Page
from playwright.async_api import Error as PlaywrightError

from commandcenter.auth import Role
from tests.browser import SECRET, ServerProcess, drive_with_server, token, until
from tests.browser_console_scenario import (
    CONSOLE_BUILD,
    CONSOLE_PATH,
    DESKTOP,
    PHONE,
    SCREENSHOTS,
    SETTLED,
    add_operator,
    console_state,
    on_signin,
)
from tests.browser_signin_scenario import PASSWORD, add_account
from tests.wsclient import Client

OFFICER = "o-1"
OFFICER_NAME = "officer o-1"  # as add_account names it
OPERATOR = "op-1"
# Fullwidth punctuation, as Chinese is written: it must arrive as written.
DIRECT = "请立即前往二号现场，注意安全。"
COURT_WIDE = "今晚十点前各组上报执行进展"
# The console's page of instructions (console/src/instructions.ts), and how many more are
# sent to page through.
PAGE = 10
MORE = 11


def server_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMANDCENTER_")}
    return env | {
        "COMMANDCENTER_SERVER_DATA_DIR": str(workdir / "var"),
        "COMMANDCENTER_RECORDER_SQLITE_PATH": str(workdir / "trace.sqlite3"),
        "COMMANDCENTER_AUTH_JWT_SECRET": SECRET,
    }


async def run(workdir: Path) -> dict[str, Any]:
    if not CONSOLE_BUILD.exists():
        return {"error": f"{CONSOLE_BUILD} is missing: run `make console`"}
    add_operator(workdir)
    add_account(workdir, OFFICER, "officer")
    return await drive_with_server(ServerProcess(workdir), drive)


def check_trace(workdir: Path, result: dict[str, Any]) -> None:
    """Once the server has stopped: `commandcenter audit verify` on its trace, and the
    instruction records in it."""
    verified = subprocess.run(
        [sys.executable, "-m", "commandcenter", "audit", "verify"],
        capture_output=True, text=True, env=server_env(workdir), cwd=workdir, timeout=60,
    )  # fmt: skip
    result["audit_exit"] = verified.returncode
    result["audit_ok"] = json.loads(verified.stdout.splitlines()[-1])["ok"]
    with sqlite3.connect(workdir / "trace.sqlite3") as db:
        rows = db.execute("SELECT kind FROM trace WHERE kind LIKE 'instruction_%' ORDER BY seq")
        result["trace_kinds"] = [kind for (kind,) in rows]


async def phone_state(page: Page) -> dict[str, Any]:
    """The phone client's state, or {} while the page is between two documents."""
    try:
        found: dict[str, Any] = await page.evaluate("window.cc ? window.cc.state() : {}")
    except PlaywrightError:
        return {}
    return found


async def sign_in(page: Page, base: str, path: str, user: str) -> None:
    await page.goto(f"{base}{path}", timeout=10_000)
    await until(lambda: on_signin(page), within=10, what=f"{user} sent to sign in")
    await page.fill("#user", user)
    await page.fill("#password", PASSWORD)
    await page.click("#submit")


async def phone_connected(page: Page) -> bool:
    s = await phone_state(page)
    return bool(s.get("connected")) and (s.get("user") or {}).get("id") == OFFICER


async def shown(page: Page) -> list[str]:
    """The instruction texts the phone shows, or [] when none (or between documents)."""
    try:
        if await page.locator("#instructions").is_hidden():
            return []
        return await page.locator("#instruction-list .instruction-text").all_inner_texts()
    except PlaywrightError:
        return []


async def recipient_state(console: Page, text: str) -> str | None:
    for info in (await console_state(console)).get("instructions", []):
        if info["text"] == text and info["recipients"]:
            state: str = info["recipients"][0]["state"]
            return state
    return None


async def shoot_console(page: Page, name: str) -> None:
    await page.set_viewport_size(DESKTOP)
    await page.evaluate(SETTLED)
    await page.screenshot(path=str(SCREENSHOTS / f"instructions-console-{name}-1920x1080.png"))
    await page.set_viewport_size(PHONE)
    await page.evaluate(SETTLED)
    await page.screenshot(
        path=str(SCREENSHOTS / f"instructions-console-{name}-390x844.png"), full_page=True
    )
    await page.set_viewport_size(DESKTOP)
    await page.evaluate(SETTLED)


async def shoot_phone(page: Page, name: str) -> None:
    await page.screenshot(path=str(SCREENSHOTS / f"instructions-phone-{name}-390x844.png"))
    await page.set_viewport_size(DESKTOP)
    await page.screenshot(path=str(SCREENSHOTS / f"instructions-phone-{name}-1920x1080.png"))
    await page.set_viewport_size(PHONE)


async def drive(browser: Browser, base: str, seen: dict[str, Any]) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    phone_context = await browser.new_context(
        viewport=PHONE, permissions=["geolocation", "camera", "microphone"], has_touch=True
    )
    phone = await phone_context.new_page()
    phone_log: list[str] = []
    phone.on("pageerror", lambda e: phone_log.append(f"pageerror: {e}"))
    seen["phone_errors"] = phone_log
    await sign_in(phone, base, "/app/phone.html", OFFICER)
    await until(lambda: phone_connected(phone), within=15, what="the phone connected")

    console_context = await browser.new_context(viewport=DESKTOP)
    console = await console_context.new_page()
    console_log: list[str] = []
    console.on("pageerror", lambda e: console_log.append(f"pageerror: {e}"))
    seen["console_errors"] = console_log
    await sign_in(console, base, CONSOLE_PATH, OPERATOR)
    await until(lambda: _console_connected(console), within=15, what="the console connected")

    # The officer's card, from the roster, has the composer.
    roster = console.get_by_role("region", name="在线干警")
    await roster.get_by_role("button", name=OFFICER_NAME).click(timeout=10_000)
    card = console.locator("aside.officer-card")
    await card.get_by_label("指令内容").fill(DIRECT)
    await card.get_by_role("button", name="发送指令").click()

    seen["phone_shows"] = await until(
        lambda: _showing(phone, DIRECT), within=10, what="the phone shows the instruction"
    )
    await shoot_phone(phone, "shown")
    seen["console_delivered"] = await until(
        lambda: _state_is(console, DIRECT, "delivered"), within=10, what="console: delivered"
    )
    panel = console.get_by_role("region", name="指令")
    await panel.get_by_text("已送达 1/1 · 已读 0/1").wait_for(timeout=5_000)
    seen["console_delivered_text"] = await panel.locator(
        ".instr-recipient .instr-state"
    ).first.inner_text()
    await shoot_console(console, "delivered")

    # F5 on the phone before acknowledging: it is shown again.
    await phone.reload()
    await until(lambda: phone_connected(phone), within=15, what="the phone back after F5")
    seen["after_f5_shows"] = await until(
        lambda: _showing(phone, DIRECT), within=10, what="shown again after F5"
    )
    # Not read yet: the console still says delivered.
    seen["after_f5_console"] = await recipient_state(console, DIRECT)

    await phone.get_by_role("button", name="收到").click()
    await until(lambda: _none_shown(phone), within=10, what="the phone's instruction gone")
    seen["console_read"] = await until(
        lambda: _state_is(console, DIRECT, "read"), within=10, what="console: read"
    )
    await panel.get_by_text("已送达 1/1 · 已读 1/1").wait_for(timeout=5_000)
    seen["console_read_text"] = await panel.locator(
        ".instr-recipient .instr-state"
    ).first.inner_text()
    await shoot_console(console, "read")

    # A court-wide instruction from the 全院指令 composer.
    await console.locator(".instr-court").get_by_label("指令内容").fill(COURT_WIDE)
    await console.get_by_role("button", name="发送全院指令").click()
    seen["phone_shows_court_wide"] = await until(
        lambda: _showing(phone, COURT_WIDE), within=10, what="the phone shows the court's"
    )
    seen["court_wide_from"] = await phone.locator(".instruction-from").first.inner_text()
    await shoot_phone(phone, "court-wide")
    await phone.get_by_role("button", name="收到").click()
    seen["court_wide_read"] = await until(
        lambda: _state_is(console, COURT_WIDE, "read"), within=10, what="court-wide read"
    )
    seen["court_wide_target"] = await panel.locator(".instr-item .instr-target").first.inner_text()
    await shoot_console(console, "court-wide")
    # After F5 the console lists both, with their receipts.
    await console.reload()
    await until(lambda: _console_connected(console), within=15, what="console back after F5")
    listed = await until(lambda: _listed(console, 2), within=10, what="console lists both")
    seen["listed_after_f5"] = [[i["text"], i["recipients"][0]["state"]] for i in listed]

    # Paged: another operator (a bare protocol client) sends eleven more; after F5 the
    # console lists the newest page and offers the older ones, which a click brings.
    async with aiohttp.ClientSession() as http:
        query = f"token={token('op-2', Role.OPERATOR, 'P0101', '李娜')}&v=1"
        other = Client(
            await http.ws_connect(f"{base.replace('http://', 'ws://')}/ws?{query}"), "json", "op-2"
        )
        await other.expect("welcome", 10)
        for n in range(MORE):
            await other.request(
                "send_instruction", reply="instruction_sent", court="P0101", text=f"第{n + 1}号通报"
            )
        await other.close()
    await console.reload()
    await until(lambda: _console_connected(console), within=15, what="console back again")
    first = await until(lambda: _listed(console, PAGE), within=10, what="the newest page")
    seen["first_page"] = [i["text"] for i in first]
    older = panel.get_by_role("button", name="显示更早的指令")
    seen["older_offered"] = await older.is_visible()
    await shoot_console(console, "paged")
    await older.click()
    everything = await until(lambda: _listed(console, MORE + 2), within=10, what="older ones")
    seen["after_older"] = [i["text"] for i in everything]
    seen["older_after_all"] = not await until(
        older.is_hidden, within=5, what="nothing older to offer"
    )
    await phone_context.close()
    await console_context.close()


async def _console_connected(page: Page) -> bool:
    return (await console_state(page)).get("connection") == "connected"


async def _showing(page: Page, text: str) -> list[str] | None:
    texts = await shown(page)
    return texts if text in texts else None


async def _none_shown(page: Page) -> bool:
    return await shown(page) == [] and not (await phone_state(page)).get("instructions", [1])


async def _state_is(page: Page, text: str, state: str) -> str | None:
    return state if await recipient_state(page, text) == state else None


async def _listed(page: Page, n: int) -> list[dict[str, Any]] | None:
    found: list[dict[str, Any]] = (await console_state(page)).get("instructions", [])
    return found if len(found) == n else None


def main() -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory(prefix="cc-instructions-") as tmp:
        result = asyncio.run(run(Path(tmp)))
        if "error" not in result:
            check_trace(Path(tmp), result)
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
