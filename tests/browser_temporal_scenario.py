"""Whether Chromium honours the L1T3 the conference page asks of its camera, seen from both
ends, run inside a network namespace by tests/test_browser_temporal.py:
    unshare -n -- python -m tests.browser_temporal_scenario

A supervisor hosts a conference from the page's form (it joins and publishes its fake camera
and microphone, as every conference member does); once its page has sent video a while, its
getStats says which scalabilityMode the encoder runs. It leaves: the server's media worker
closes the publication and logs its packets per temporal layer id (media.forwarder's
"temporal layers" line), which this script reads from the server's log.

Prints ONE JSON line: what it measured, or the error that stopped it with the page's state
and the tail of the server's log.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

from commandcenter.auth import Role
from tests.browser import ServerProcess, launch, token, until

PAGE_PATH = "/app/conference.html"
HOST = ("sv-p", Role.SUPERVISOR, "P", "省院指挥长")
TITLE = "分层编码验证会商"
SIGNAL_S = 10.0
# Video frames the page must have encoded before it leaves: seconds of its 15 fps camera,
# many groups of the 0, 2, 1, 2 pattern.
FRAMES = 60
MEDIA_S = 20.0
LOG_S = 10.0


def layer_lines(log: Path) -> list[dict[str, Any]]:
    """The server's (and its media workers') "temporal layers" log lines."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if '"temporal layers"' not in line:
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


async def drive(server: ServerProcess, result: dict[str, Any]) -> None:
    async with async_playwright() as playwright:
        browser = await launch(playwright)
        try:
            context = await browser.new_context()
            page = await context.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            user, role, court, name = HOST
            await page.goto(
                f"{server.base}{PAGE_PATH}#token={token(user, role, court, name)}",
                timeout=10_000,
            )

            async def signed_in() -> bool:
                return bool((await page.evaluate("window.conf.state()"))["connected"])

            await until(signed_in, within=SIGNAL_S, what="signed in")
            form = page.get_by_role("form", name="发起会商")
            await form.get_by_label("会商标题").fill(TITLE)
            await form.get_by_role("button", name="发起会商", exact=True).click()

            async def video_sent() -> dict[str, Any] | None:
                stats = await page.evaluate("window.conf.stats()")
                video = stats["outbound"].get("video")
                if stats["connectionState"] != "connected" or video is None:
                    return None
                return video if video["framesEncoded"] >= FRAMES else None

            try:
                video = await until(video_sent, within=MEDIA_S, what="video sent")
            finally:
                result["page_state"] = await page.evaluate(
                    "(() => { const s = window.conf.state(); return {media: s.media,"
                    " lastError: s.lastError, notice: s.notice}; })()"
                )
                result["console"] = console[-20:]
            result["outbound_video"] = video
            result["scalability_mode"] = video.get("scalabilityMode")
            await page.get_by_role("button", name="退出会商", exact=True).click()

            async def logged() -> list[dict[str, Any]] | None:
                return layer_lines(server.log_path) or None

            lines = await until(logged, within=LOG_S, what="the server logs the layers")
            result["server_layers"] = lines
            await context.close()
        finally:
            await browser.close()


async def run(workdir: Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    started = time.monotonic()
    server = ServerProcess(workdir)
    try:
        await server.wait_healthy()
        await server.check_app()
        await drive(server, result)
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc(limit=6)
    finally:
        server.stop()
        if "error" in result:
            result["server_log_tail"] = server.log_tail()
    result["elapsed_s"] = round(time.monotonic() - started, 2)
    return result


def main(argv: list[str]) -> int:
    del argv
    # The namespace starts with `lo` down: nothing, not even 127.0.0.1, would answer.
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory(prefix="cc-browser-temporal-") as tmp:
        result = asyncio.run(run(Path(tmp)))
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
