"""Whether Chromium honours the L1T3 the conference page asks of its camera, and decodes
what the relay makes of it when it leaves layers out; run inside a network namespace by
tests/test_browser_temporal.py:
    unshare -n -- python -m tests.browser_temporal_scenario

Two runs of the real server (media workers as configured by default), each with a
supervisor who hosts a conference from the page's form, inviting court P01, and the operator
of P01, who joins from the invitation and sees the host in its spotlight. Both pages publish
their fake camera and microphone, as every conference member does.

- `all`: the defaults. The host's getStats says which scalabilityMode its encoder runs; the
  site decodes the spotlight at the host's frame rate.
- `half`: `media.temporal_max_layer = 1`, so the relay sends every subscriber the frames of
  TID 0 and 1 (half of them), with sequence numbers and PictureIDs closed up: the site must
  decode them all, at half the host's rate, without asking for a packet or a picture again;
- `base`: `media.temporal_max_layer = 0`: TID 0 alone, a quarter of the frames, likewise.

In each run the host then leaves: the server closes its publication and logs its packets per
temporal layer id and the packets its subscribers were not sent (media.forwarder's "temporal
layers" line), read here from the server's log.

Prints ONE JSON line: per run what it measured, or the error that stopped it with the pages'
state and the tail of the server's log.
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

from playwright.async_api import Browser, Page, async_playwright

from commandcenter.auth import Role
from tests.browser import ServerProcess, launch, token, until

PAGE_PATH = "/app/conference.html"
HOST = ("sv-p", Role.SUPERVISOR, "P", "省院指挥长")
SITE = ("op-a", Role.OPERATOR, "P01", "一中院指挥中心")
TITLE = "分层编码验证会商"
RUNS = {
    "all": {},
    "half": {"COMMANDCENTER_MEDIA_TEMPORAL_MAX_LAYER": "1"},
    "base": {"COMMANDCENTER_MEDIA_TEMPORAL_MAX_LAYER": "0"},
}
SIGNAL_S = 10.0
MEDIA_S = 20.0
LOG_S = 10.0
# How long the site's spotlight is watched: many groups of the 0, 2, 1, 2 pattern at the
# page's 15 fps camera.
WATCH_S = 6.0
# Frames the spotlight must have decoded before the watch starts (its first keyframe in).
FIRST_FRAMES = 3


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


class ConferencePage:
    def __init__(self, page: Page, user: tuple[str, Role, str, str]) -> None:
        self.page = page
        self.user = user
        self.console: list[str] = []
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))

    async def open(self, base: str) -> None:
        user, role, court, name = self.user
        await self.page.goto(
            f"{base}{PAGE_PATH}#token={token(user, role, court, name)}", timeout=10_000
        )
        await until(self.signed_in, within=SIGNAL_S, what=f"{user} signed in")

    async def signed_in(self) -> bool:
        return bool((await self.state())["connected"])

    async def state(self) -> dict[str, Any]:
        state: dict[str, Any] = await self.page.evaluate("window.conf.state()")
        return state

    async def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = await self.page.evaluate("window.conf.stats()")
        return stats

    async def snapshot(self) -> dict[str, Any]:
        try:
            state = await self.state()
            return {
                "media": state["media"],
                "lastError": state["lastError"],
                "notice": state["notice"],
                "stats": await self.stats(),
                "console": self.console[-20:],
            }
        except Exception as exc:
            return {"error": str(exc)}


async def drive(
    browser: Browser, server: ServerProcess, thinned: bool, result: dict[str, Any]
) -> None:
    """One run; `thinned`: the relay leaves layers out, so wait for the worker that sends
    the site its spotlight (its own publication, or the fabric's copy of it) to log what it
    left out."""
    host = ConferencePage(await (await browser.new_context()).new_page(), HOST)
    site = ConferencePage(await (await browser.new_context()).new_page(), SITE)
    try:
        await host.open(server.base)
        await site.open(server.base)
        form = host.page.get_by_role("form", name="发起会商")
        await form.get_by_label("会商标题").fill(TITLE)
        await form.get_by_label("邀请法院及其下级法院").fill("P01")
        await form.get_by_role("button", name="发起会商", exact=True).click()
        invitation = f"{HOST[3]}邀请您参加「{TITLE}」"
        item = site.page.get_by_role("listitem").filter(has_text=invitation)
        await item.get_by_role("button", name="加入", exact=True).click()

        async def spotlight() -> dict[str, Any] | None:
            stats = await site.stats()
            slot: dict[str, Any] | None = stats["slots"].get("spotlight")
            if slot is None or slot["framesDecoded"] < FIRST_FRAMES:
                return None
            return slot

        async def host_video() -> dict[str, Any] | None:
            video: dict[str, Any] | None = (await host.stats())["outbound"].get("video")
            return video

        before = await until(spotlight, within=MEDIA_S, what="the site decodes the spotlight")
        sent_before = await until(host_video, within=SIGNAL_S, what="the host sends video")
        await asyncio.sleep(WATCH_S)  # a measuring window, not a wait for a condition
        after = await until(spotlight, within=SIGNAL_S, what="the spotlight")
        sent_after = await until(host_video, within=SIGNAL_S, what="the host sends video")
        result["scalability_mode"] = sent_after.get("scalabilityMode")
        result["host_frames_encoded"] = sent_after["framesEncoded"] - sent_before["framesEncoded"]
        result["site_spotlight"] = {
            key: after[key] - before[key]
            for key in ("framesReceived", "framesDecoded", "framesDropped", "nackCount", "pliCount")
        }
        await host.page.get_by_role("button", name="退出会商", exact=True).click()

        async def logged() -> list[dict[str, Any]] | None:
            lines = [x for x in layer_lines(server.log_path) if x.get("owner") == HOST[0]]
            if thinned and not any(x["layers_dropped"] for x in lines):
                return None
            return lines or None

        result["server_layers"] = await until(
            logged, within=LOG_S, what="the server logs the host's layers"
        )
    except Exception:
        result["pages"] = {"host": await host.snapshot(), "site": await site.snapshot()}
        raise


async def run(name: str, workdir: Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    started = time.monotonic()
    server = ServerProcess(workdir, extra_env=RUNS[name])
    try:
        await server.wait_healthy()
        await server.check_app()
        async with async_playwright() as playwright:
            browser = await launch(playwright)
            try:
                await drive(browser, server, name != "all", result)
            finally:
                await browser.close()
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc(limit=6)
    finally:
        server.stop()
        if "error" in result:
            result["server_log_tail"] = server.log_tail()
    result["elapsed_s"] = round(time.monotonic() - started, 2)
    return result


async def run_all() -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name in RUNS:
        with tempfile.TemporaryDirectory(prefix=f"cc-browser-temporal-{name}-") as tmp:
            result[name] = await run(name, Path(tmp))
        if "error" in result[name]:
            result["error"] = f"run {name}: {result[name]['error']}"
            break
    return result


def main(argv: list[str]) -> int:
    del argv
    # The namespace starts with `lo` down: nothing, not even 127.0.0.1, would answer.
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    result = asyncio.run(run_all())
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
