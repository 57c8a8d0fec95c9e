"""The console's call audit while the server still indexes a trace written before its
subject index, in headless Chromium against the real server, run inside a network namespace
by tests/test_browser_reindex.py:

    unshare -n -- python -m tests.browser_reindex_scenario

The trace is written first and stripped of its index, as a server before the index left it;
the server is started with a reindex of one record per batch and ten minutes between batches,
so it stays under way. A supervisor opens 通话记录, finds the call and opens its audit: the
view says that older records may be missing, in Chinese, then in English. Prints ONE JSON
line with what each step saw.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Browser, Page

from sessions.recorder import TraceEvent
from sessions.sqlite_store import SqliteTraceStore
from tests.browser import ServerProcess, drive_with_server
from tests.browser_console_scenario import CONSOLE_BUILD, SCREENSHOTS
from tests.browser_records_scenario import UNTRANSLATED, add_account, shoot, sign_in_console

SUPERVISOR = ("s-1", "赵强")
SUPERVISOR_COURT = "P01"
CALL = "c-old-1"
# Records of the old trace; the first batch files the first, the rest wait.
RECORDS = 20


async def write_old_trace(path: Path) -> None:
    now = time.time() - 3600
    created = {
        "call": CALL,
        "direction": "officer_to_center",
        "officer": "o-1",
        "court": "P0101",
        "caller": "o-1",
    }
    events = [TraceEvent("call_created", now, created)]
    events += [TraceEvent("call_ringing", now + i, {"call": CALL, "users": ["op-1"]})
               for i in range(1, RECORDS)]  # fmt: skip
    store = await SqliteTraceStore.open(path)
    try:
        await store.append(events)
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        conn.execute("DROP TABLE trace_subjects")
        conn.execute("DROP TABLE trace_reindex")
        conn.commit()
    finally:
        conn.close()


async def run(workdir: Path) -> dict[str, Any]:
    if not CONSOLE_BUILD.exists():
        return {"error": f"{CONSOLE_BUILD} is missing: run `make console`"}
    # The trace first: adding the account records to it, after the call.
    await write_old_trace(workdir / "trace.sqlite3")
    add_account(workdir, *SUPERVISOR, "supervisor", SUPERVISOR_COURT)
    slow = {"COMMANDCENTER_RECORDER_REINDEX_BATCH": "1",
            "COMMANDCENTER_RECORDER_REINDEX_PAUSE_S": "600"}  # fmt: skip
    server = ServerProcess(workdir, extra_env=slow)

    async def drive(browser: Browser, base: str, seen: dict[str, Any]) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page = await sign_in_console(browser, base, SUPERVISOR[0])
        try:
            await steps(page, seen)
            async with aiohttp.ClientSession() as http, http.get(f"{base}/healthz") as resp:
                seen["reindex_remaining"] = (await resp.json())["reindex_remaining"]
        except Exception:
            await page.screenshot(path=str(SCREENSHOTS / "records-reindexing-failure.png"))
            raise

    return await drive_with_server(server, drive)


async def steps(page: Page, seen: dict[str, Any]) -> None:
    await page.get_by_role("button", name="通话记录", exact=True).click()
    view = page.get_by_role("region", name="通话记录")
    await view.get_by_role("button", name="查询").click()
    row = view.locator("table tbody tr button").first
    await row.wait_for(timeout=10_000)
    await row.click()
    audit = page.get_by_role("region", name="通话审计")
    await audit.locator("table.rec-timeline tbody tr").first.wait_for(timeout=10_000)
    seen["note"] = await audit.get_by_role("note").inner_text()
    seen["timeline_rows"] = await audit.locator("table.rec-timeline tbody tr").count()
    seen["untranslated"] = await page.evaluate(UNTRANSLATED)
    await shoot(page, "call-audit-reindexing")

    await page.get_by_role("button", name="English").click()
    english = page.get_by_role("region", name="Call records")
    await english.wait_for(timeout=10_000)
    await english.get_by_role("button", name="Search").click()
    row = english.locator("table tbody tr button").first
    await row.wait_for(timeout=10_000)
    await row.click()
    audit = page.get_by_role("region", name="Call audit")
    await audit.locator("table.rec-timeline tbody tr").first.wait_for(timeout=10_000)
    seen["english_note"] = await audit.get_by_role("note").inner_text()


def main() -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory(prefix="cc-reindex-") as tmp:
        result = asyncio.run(run(Path(tmp)))
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
