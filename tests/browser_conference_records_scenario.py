"""The console's 会商记录 (conference records) in headless Chromium against the real server,
run inside a network namespace by tests/test_browser_conference_records.py:

    unshare -n -- python -m tests.browser_conference_records_scenario

A supervisor account is added with the real CLI. Another supervisor of the same court hosts a
conference over the WebSocket (the protocol's own messages): an operator's site joins, asks
for the floor and is given it, the host mutes all, the site leaves, the host ends it. Then the
supervisor, as a person would, opens 会商记录 on the console, searches the day, finds the
conference by its 会商编号, opens its audit view and reads its timeline; the figures the page
shows must equal `commandcenter stats --format json` for the same period and court. The view
then switches to English. Screenshots go to build/screenshots/records-conferences-*.png.
Prints ONE JSON line with what each step saw.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Browser, Page

from commandcenter.auth import Role
from tests.browser import ServerProcess, drive_with_server, token
from tests.browser_console_scenario import CONSOLE_BUILD, SCREENSHOTS
from tests.browser_records_scenario import FROM, TO, add_account, cli, shoot, sign_in_console
from tests.wsclient import Client

SUPERVISOR_COURT = "P01"
SUPERVISOR = ("s-1", "赵强")
HOST = ("s-2", "钱敏")
SITE = ("op-9", "孙丽", "P0101")
TITLE = "全省集中执行会商"


async def connect(http: aiohttp.ClientSession, base: str, user: str, role: Role, court: str,
                  name: str) -> Client:  # fmt: skip
    ws = await http.ws_connect(f"{base.replace('http', 'ws', 1)}/ws",
                               params={"token": token(user, role, court, name)})  # fmt: skip
    client = Client(ws, "json", user)
    client.welcome = await client.expect("welcome")
    return client


async def hold_conference(base: str) -> str:
    """The host's conference from creation to end, over the protocol; its id."""
    async with aiohttp.ClientSession() as http:
        host = await connect(http, base, HOST[0], Role.SUPERVISOR, SUPERVISOR_COURT, HOST[1])
        site = await connect(http, base, SITE[0], Role.OPERATOR, SITE[2], SITE[1])
        created = await host.request(
            "create_conference", reply="conference_created", title=TITLE,
            invite_below=[SUPERVISOR_COURT],
        )  # fmt: skip
        cid: str = created["conference"]["conference_id"]
        await host.request("join_conference", reply="conference_joined", conference_id=cid)
        await site.request("join_conference", reply="conference_joined", conference_id=cid)
        await site.request("raise_hand", conference_id=cid)
        await site.expect("floor_status", conference_id=cid)
        await host.request("grant_floor", conference_id=cid, site=SITE[0])
        await site.expect("floor_status", where=lambda m: m["floor"]["state"] == "permitted")
        await host.request("mute_all", conference_id=cid)
        await site.request("leave_conference", conference_id=cid)
        await host.request("end_conference", conference_id=cid)
        await host.expect("conference_ended", conference_id=cid)
        for client in (host, site):
            await client.ws.close()
    return cid


async def run(workdir: Path) -> dict[str, Any]:
    if not CONSOLE_BUILD.exists():
        return {"error": f"{CONSOLE_BUILD} is missing: run `make console`"}
    add_account(workdir, *SUPERVISOR, "supervisor", SUPERVISOR_COURT)
    server = ServerProcess(workdir)

    async def drive(browser: Browser, base: str, seen: dict[str, Any]) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        seen["conference_id"] = await hold_conference(base)
        page = await sign_in_console(browser, base, SUPERVISOR[0])
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            await steps(page, seen, workdir)
        except Exception:
            await page.screenshot(path=str(SCREENSHOTS / "records-conferences-failure.png"))
            raise
        seen["page_errors"] = errors

    return await drive_with_server(server, drive)


async def steps(page: Page, seen: dict[str, Any], workdir: Path) -> None:
    cid = seen["conference_id"]
    await page.get_by_role("button", name="会商记录", exact=True).click()
    view = page.get_by_role("region", name="会商记录")
    await view.get_by_label("起始日期").fill(FROM)
    await view.get_by_label("截止日期（不含）").fill(TO)
    await view.get_by_label("法院", exact=True).select_option(SUPERVISOR_COURT)
    await view.get_by_role("button", name="查询").click()
    await view.get_by_role("button", name=cid).wait_for(timeout=10_000)
    seen["status"] = await view.get_by_role("status").inner_text()
    seen["figures_text"] = await view.locator(".rec-figures").inner_text()
    seen["row"] = await view.locator("table.rec-conferences tbody tr").first.inner_text()
    report = json.loads(
        await asyncio.to_thread(
            cli, workdir, "stats", "--from", FROM, "--to", TO, "--court", SUPERVISOR_COURT,
            "--format", "json",
        )
    )  # fmt: skip
    seen["cli"] = {k: report["figures"][k] for k in ("conferences", "enforcement_actions")}

    await view.get_by_role("button", name=cid).click()
    audit = view.get_by_role("region", name="会商审计")
    await audit.locator("table.rec-timeline tbody tr").first.wait_for(timeout=10_000)
    seen["shown_id"] = await audit.get_by_label("会商编号").inner_text()
    seen["shown_title"] = await audit.get_by_label("主题").inner_text()
    seen["shown_host"] = await audit.get_by_label("主持人").inner_text()
    seen["shown_grants"] = await audit.get_by_label("准许发言次数").inner_text()
    cells = audit.locator("table.rec-timeline tbody tr")
    seen["timeline_events"] = await cells.locator("td:nth-child(3)").all_inner_texts()
    seen["timeline_people"] = await cells.locator("td:nth-child(4)").all_inner_texts()
    seen["timeline_details"] = await cells.locator("td:nth-child(5)").all_inner_texts()
    await shoot(page, "conferences")

    await page.get_by_role("button", name="English").click()
    english = page.get_by_role("region", name="Conference records")
    await english.wait_for(timeout=10_000)
    await english.get_by_role("button", name="Search").click()
    await english.get_by_role("button", name=cid).click()
    timeline = english.locator("table.rec-timeline tbody tr td:nth-child(3)")
    await timeline.first.wait_for(timeout=10_000)
    seen["english_events"] = await timeline.all_inner_texts()
    seen["english_nav"] = await page.locator("nav.rec-nav").inner_text()


def main() -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory(prefix="cc-conf-records-") as tmp:
        result = asyncio.run(run(Path(tmp)))
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
