"""The console when the browser refuses the microphone, in headless Chromium against the real
server, run inside a network namespace by tests/test_browser_permission.py:

    unshare -n -- python -m tests.browser_permission_scenario

The officer's page runs in a Chromium that grants camera and microphone; the operator's
console in a second one launched with `--use-fake-ui-for-media-stream=deny`, which refuses
them as a person clicking "Block" would (NotAllowedError). The officer calls, the operator
answers: the call goes on (the officer is seen and heard) and the console says plainly, in
Chinese, that the microphone was refused and where to allow it. Screenshots at 1920x1080 and
390x844 go to build/screenshots/console-permission-*.png. Prints ONE JSON line.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from playwright.async_api import Browser

from commandcenter.auth import Role
from tests.browser import CHROMIUM, CHROMIUM_ARGS, ServerProcess, drive_with_server, until
from tests.browser_console_scenario import (
    CONSOLE_PATH,
    DESKTOP,
    OPERATOR,
    PASSWORD,
    PHONE,
    SCREENSHOTS,
    add_operator,
    client_page,
    connected,
    in_call,
)

OFFICER = ("o-1", "张伟")
DENY = "--use-fake-ui-for-media-stream=deny"


async def run(workdir: Path) -> dict[str, Any]:
    add_operator(workdir)
    return await drive_with_server(ServerProcess(workdir), drive)


async def drive(browser: Browser, base: str, seen: dict[str, Any]) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    officer = await client_page(browser, base, OFFICER[0], Role.OFFICER, OFFICER[1])
    args = [DENY if a == "--use-fake-ui-for-media-stream" else a for a in CHROMIUM_ARGS]
    refusing = await browser.browser_type.launch(
        executable_path=str(CHROMIUM), args=args, timeout=20_000
    )
    try:
        context = await refusing.new_context(viewport=DESKTOP)
        page = await context.new_page()
        await page.goto(f"{base}{CONSOLE_PATH}", timeout=10_000)
        await page.wait_for_selector("#signin", timeout=10_000)
        await page.fill("#user", OPERATOR[0])
        await page.fill("#password", PASSWORD)
        await page.click("#submit")
        await until(lambda: connected(page), within=15, what="the console connected")
        seen["insecure_shown_on_http_loopback"] = await page.locator(
            ".topbar .insecure"
        ).is_visible()
        await officer.evaluate("window.cc.callCenter()")
        ringing = page.get_by_label(f"正在呼入 {OFFICER[1]}")
        await ringing.get_by_role("button", name="接听").click()
        await until(lambda: in_call(page), within=10, what="the call answered")
        alert = page.locator(".call .media-problem")
        await alert.wait_for(state="visible", timeout=10_000)
        seen["message"] = (await alert.text_content() or "").strip()
        seen["talk"] = (await page.locator(".call .talk").text_content() or "").strip()
        seen["still_in_call"] = await in_call(page)
        seen["mute_offered"] = await page.get_by_role("button", name="静音").count()
        await page.screenshot(path=str(SCREENSHOTS / "console-permission-1920x1080.png"))
        await page.set_viewport_size(PHONE)
        await page.screenshot(
            path=str(SCREENSHOTS / "console-permission-390x844.png"), full_page=True
        )
        await page.set_viewport_size(DESKTOP)
        await page.get_by_role("button", name="English").click()
        seen["message_en"] = (await alert.text_content() or "").strip()
        await context.close()
    finally:
        await refusing.close()


def main() -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory(prefix="cc-permission-") as tmp:
        result = asyncio.run(run(Path(tmp)))
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
