"""The records side of the console in headless Chromium against the real server, run inside a
network namespace by tests/test_browser_records.py:

    unshare -n -- python -m tests.browser_records_scenario

An operator and a supervisor account are added with the real CLI. An officer (today's web
client, fake camera) calls the center about a case; the operator answers on the console, the
supervisor watches the call from their console (its video decoded there), the operator takes
a snapshot and hangs up. Then the supervisor, as a person would: opens 证据, searches the
case number, opens the snapshot and sees the hash the server stored and the picture; runs
the chain check (ok); opens the call's audit view from the item and finds themselves among
who watched; opens 统计, whose figures must equal `commandcenter stats --format json` for the
same period and court. Screenshots at 1920x1080 (and the evidence browser at 390x844) go to
build/screenshots/records-*.png. Prints ONE JSON line with what each step saw.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Browser, Page

from commandcenter.auth import Role
from tests.browser import SECRET, ServerProcess, drive_with_server, token, until
from tests.browser_console_scenario import (
    CONSOLE_BUILD,
    CONSOLE_PATH,
    DESKTOP,
    PASSWORD,
    PHONE,
    SCREENSHOTS,
    SETTLED,
    call_over,
    client_page,
    connected,
    console_state,
    in_call,
    on_signin,
    video_frames,
)
from tests.wsclient import Client

COURT = "P0101"
SUPERVISOR_COURT = "P01"
OPERATOR = ("op-1", "王芳")
# Seek a <video> to 0.5 s; its time once `seeked` fires, or null after 5 s without.
SEEK = """v => new Promise(resolve => {
    const timer = setTimeout(() => resolve(null), 5000);
    const done = () => { clearTimeout(timer); resolve(v.currentTime); };
    v.addEventListener("seeked", done, {once: true});
    v.currentTime = 0.5;
})"""
SUPERVISOR = ("s-1", "赵强")
OFFICER = ("o-1", "张伟")
CASE = "(2026)粤0101执88号"
# A photo the officer's phone uploads with where it was taken: the item view's map.
MAP_CASE = "(2026)粤0101执89号"
MAP_AT = (32.0603, 118.7969, 25.0)
TODAY = dt.datetime.now(dt.UTC).date()
FROM = TODAY.isoformat()
TO = (TODAY + dt.timedelta(days=1)).isoformat()


def cli_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMANDCENTER_")}
    return env | {
        "COMMANDCENTER_SERVER_DATA_DIR": str(workdir / "var"),
        "COMMANDCENTER_RECORDER_SQLITE_PATH": str(workdir / "trace.sqlite3"),
        "COMMANDCENTER_AUTH_JWT_SECRET": SECRET,
    }


def cli(workdir: Path, *argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "commandcenter", *argv], input=stdin, capture_output=True,
        text=True, env=cli_env(workdir), cwd=workdir, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout


def add_account(workdir: Path, user: str, name: str, role: str, court: str) -> None:
    cli(workdir, "user", "add", "--user", user, "--name", name, "--role", role, "--court", court,
        "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip


async def sign_in_console(browser: Browser, base: str, user: str) -> Page:
    context = await browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page = await context.new_page()
    await page.goto(f"{base}{CONSOLE_PATH}", timeout=10_000)
    await until(lambda: on_signin(page), within=10, what=f"{user} sent to sign in")
    await page.fill("#user", user)
    await page.fill("#password", PASSWORD)
    await page.click("#submit")
    await until(lambda: connected(page), within=15, what=f"{user}'s console connected")
    return page


async def shoot(page: Page, name: str, *, phone: bool = False) -> None:
    await page.set_viewport_size(DESKTOP)
    await page.evaluate(SETTLED)
    await page.screenshot(path=str(SCREENSHOTS / f"records-{name}-1920x1080.png"), full_page=True)
    if phone:
        await page.set_viewport_size(PHONE)
        await page.evaluate(SETTLED)
        await page.screenshot(path=str(SCREENSHOTS / f"records-{name}-390x844.png"), full_page=True)
        await page.set_viewport_size(DESKTOP)
        await page.evaluate(SETTLED)


async def run(workdir: Path) -> dict[str, Any]:
    if not CONSOLE_BUILD.exists():
        return {"error": f"{CONSOLE_BUILD} is missing: run `make console`"}
    add_account(workdir, *OPERATOR, "operator", COURT)
    add_account(workdir, *SUPERVISOR, "supervisor", SUPERVISOR_COURT)
    server = ServerProcess(workdir)

    async def drive(browser: Browser, base: str, seen: dict[str, Any]) -> None:
        await drive_records(browser, base, seen, workdir)

    return await drive_with_server(server, drive)


# The visible words of the records panel that are not Chinese: tokens of two or more Latin
# letters outside identifiers (<code>: record kinds, hashes), data marked translate="no" (a
# device's name, a file's), inputs and the tile server's attribution; tokens with digits or
# _@./-# are data (ids, file names, media types).
UNTRANSLATED = r"""() => {
  const root = document.querySelector(".records");
  const skip = "code, input, textarea, select, [translate=no], .leaflet-control-attribution";
  const allowed = new Set(["ms", "km"]);
  const found = [];
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!el || el.closest(skip) || !el.checkVisibility()) continue;
    for (const token of n.textContent.split(/[\s，。：；（）()、,;:「」\uff3b\uff3d\[\]…]+/)) {
      if (!/[A-Za-z]{2,}/.test(token) || /[0-9_@.\/#-]/.test(token)) continue;
      if (!allowed.has(token)) found.push(token);
    }
  }
  return found;
}"""


async def upload_with_position(base: str) -> str:
    """The officer's phone files a photo of MAP_CASE taken at MAP_AT (the evidence API, as
    the phone page does)."""
    officer = token(OFFICER[0], Role.OFFICER, COURT, OFFICER[1])
    data = b"\xff\xd8\xff\xe0" + os.urandom(3000)
    lat, lon, accuracy = MAP_AT
    params = {
        "case": MAP_CASE, "kind": "photo", "sha256": hashlib.sha256(data).hexdigest(),
        "device": "phone-7", "capture_time": str(int(time.time() * 1000) - 30_000),
        "file_name": "IMG_0002.jpg", "lat": str(lat), "lon": str(lon), "accuracy_m": str(accuracy),
    }  # fmt: skip
    async with aiohttp.ClientSession() as http, http.post(
        f"{base}/api/evidence", params=params, data=data,
        headers={"Authorization": f"Bearer {officer}", "Content-Type": "image/jpeg"},
    ) as resp:  # fmt: skip
        body = await resp.json()
        if resp.status != 201:
            raise RuntimeError(f"upload with a position: {resp.status} {body}")
    return str(body["evidence_id"])


# How many requests the page made for the recording's bytes (the resource timing entries of
# the content route).
RANGES_ASKED = """() => performance.getEntriesByType("resource")
  .filter(e => new URL(e.name).pathname.endsWith("/content")).length"""


async def trail_kinds(base: str, evidence_id: str) -> list[str]:
    """The item's audit trail as kinds (a read names how: `evidence_read:player`), as an
    auditor reads it."""
    auditor = token("au-1", Role.AUDITOR, "P", "审计员")
    async with aiohttp.ClientSession() as http, http.get(
        f"{base}/api/evidence/{evidence_id}/audit",
        headers={"Authorization": f"Bearer {auditor}"},
    ) as resp:  # fmt: skip
        body = await resp.json()
    return [
        f"{r['kind']}:{r['data']['via']}" if "via" in r["data"] else r["kind"]
        for r in body["records"]
    ]


async def case_items(base: str) -> dict[str, dict[str, Any]] | None:
    """The case's items as the evidence API keeps them, by kind, once the snapshot and the
    call's recordings (filed when the call ends: the officer's video, the officer's, the
    operator's and the supervisor's audio: a supervisor who joins openly, the default
    `calls.supervisor_join`, talks and is recorded) are all there; asked for by an auditor."""
    auditor = token("au-1", Role.AUDITOR, "P", "审计员")
    async with aiohttp.ClientSession() as http, http.get(
        f"{base}/api/evidence", params={"case": CASE},
        headers={"Authorization": f"Bearer {auditor}"},
    ) as resp:  # fmt: skip
        body = await resp.json()
    kinds = sorted(item["kind"] for item in body["items"])
    if kinds != ["audio", "audio", "audio", "photo", "video"]:
        return None
    return {item["kind"]: item for item in body["items"]}


async def instruct_and_acknowledge(officer: Page, base: str) -> None:
    ws_url = base.replace("http://", "ws://") + "/ws"
    sender = token("op-2", Role.OPERATOR, COURT, "陈杰")
    async with aiohttp.ClientSession() as http:
        client = Client(await http.ws_connect(f"{ws_url}?token={sender}&v=1"), "json", "op-2")
        client.welcome = await client.expect("welcome", 10.0)
        sent = await client.request(
            "send_instruction", reply="instruction_sent", officer=OFFICER[0], text="请回电"
        )
        instruction_id = sent["instruction_id"]

        async def shown() -> bool:
            listed = await officer.evaluate("window.cc.state().instructions")
            return any(i["instruction_id"] == instruction_id for i in listed)

        await until(shown, within=10, what="the instruction on the officer's page")
        await officer.evaluate(f"window.cc.acknowledgeInstruction({json.dumps(instruction_id)})")
        await client.expect(
            "receipt_update",
            10.0,
            where=lambda m: (
                m["instruction_id"] == instruction_id and m["recipient"]["state"] == "read"
            ),
        )
        await client.close()


async def drive_records(browser: Browser, base: str, seen: dict[str, Any], workdir: Path) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    officer = await client_page(browser, base, OFFICER[0], Role.OFFICER, OFFICER[1])
    await officer.evaluate("window.cc.position(32.0603, 118.7969, 8)")
    operator = await sign_in_console(browser, base, OPERATOR[0])
    supervisor = await sign_in_console(browser, base, SUPERVISOR[0])
    errors: list[str] = []
    supervisor.on("pageerror", lambda e: errors.append(str(e)))
    try:
        await records_steps(officer, operator, supervisor, base, seen, workdir)
    except Exception:
        # What the supervisor's page showed when a step failed, to look at.
        await supervisor.screenshot(path=str(SCREENSHOTS / "records-failure.png"), full_page=True)
        raise
    seen["page_errors"] = errors


async def records_steps(
    officer: Page, operator: Page, supervisor: Page, base: str, seen: dict[str, Any],
    workdir: Path,
) -> None:  # fmt: skip

    # The call: answered by the operator, watched by the supervisor, a snapshot kept.
    await officer.evaluate(f"window.cc.callCenter({json.dumps(CASE)})")
    ringing = operator.get_by_label(f"正在呼入 {OFFICER[1]}")
    await ringing.wait_for(timeout=10_000)
    await ringing.get_by_role("button", name="接听").click()
    await until(lambda: in_call(operator), within=10, what="the operator in the call")
    await until(lambda: video_frames(operator), within=20, what="video at the operator")
    await (
        supervisor.get_by_role("region", name="在线干警")
        .get_by_role("button", name=OFFICER[1])
        .click()
    )
    await supervisor.get_by_role("button", name="监看通话").click()
    await until(lambda: in_call(supervisor), within=10, what="the supervisor watching")
    seen["supervisor_frames"] = await until(
        lambda: video_frames(supervisor), within=20, what="video at the supervisor"
    )
    await operator.get_by_role("button", name="截图取证").click()
    await operator.get_by_role("img", name="通话截图").wait_for(timeout=15_000)
    call_id = (await console_state(operator))["call"]["call_id"]
    seen["call_id"] = call_id
    await operator.get_by_role("button", name="挂断").click()
    await until(lambda: call_over(operator), within=10, what="hung up")
    await until(lambda: call_over(supervisor), within=10, what="the supervisor's call over")
    items = await until(lambda: case_items(base), within=20, what="the snapshot and recording")
    seen["stored_sha256"] = items["photo"]["sha256"]
    seen["case_items"] = sorted(items)

    # The evidence browser: search the case, open the snapshot.
    page = supervisor
    await page.get_by_role("button", name="证据", exact=True).click()
    browser_view = page.get_by_role("region", name="证据浏览")
    await browser_view.get_by_label("案号").fill(CASE)
    await browser_view.get_by_role("button", name="查询").click()
    await browser_view.get_by_role("status").filter(has_text="共 5 条").wait_for(timeout=10_000)
    seen["search_status"] = await browser_view.get_by_role("status").first.inner_text()
    rows = browser_view.locator("table.rec-table tbody tr")
    seen["search_rows"] = await rows.count()
    seen["search_row_kinds"] = sorted(await rows.locator("td:nth-child(5)").all_inner_texts())
    # The recording first: it plays in the page.
    await rows.filter(has_text="视频").get_by_role("button").click()
    detail = page.get_by_role("region", name="证据详情")
    video = detail.locator("video")
    await video.wait_for(timeout=10_000)
    seen["video_ready"] = await until(
        lambda: video.evaluate("v => v.readyState >= 1 && v.videoWidth"), within=15,
        what="the recording's first frame loaded",
    )  # fmt: skip
    # Streamed from the content route (not a blob:), and it seeks: half a second in, as a
    # person would drag the bar (the browser asks for ranges, with the player's cookie).
    seen["video_src"] = await video.evaluate("v => new URL(v.currentSrc).pathname")
    seen["video_seeked"] = await video.evaluate(SEEK)
    # However many ranges that took, the trace holds one view of it and no download.
    seen["video_ranges"] = await page.evaluate(RANGES_ASKED)
    seen["video_trail"] = await trail_kinds(base, items["video"]["evidence_id"])
    # The whole recording hashed in the page, on request: a download, then 一致.
    local = detail.get_by_label("本机校验")
    await detail.get_by_role("button", name="下载原件并在本机校验").click()
    await until(lambda: local.get_attribute("data-ok"), within=20, what="the recording hashed")
    seen["video_local"] = {
        "ok": await local.get_attribute("data-ok"),
        "sha256": await local.get_attribute("data-sha256"),
        "text": await local.inner_text(),
    }
    seen["video_trail_checked"] = await trail_kinds(base, items["video"]["evidence_id"])
    seen["video_sha256"] = items["video"]["sha256"]
    photo_row = rows.filter(has_text="照片")
    seen["search_row_text"] = await photo_row.inner_text()
    await photo_row.get_by_role("button").click()
    sha_cell = detail.get_by_label("SHA-256（服务器计算）")
    await until(lambda: detail.get_by_role("img").count(), within=10, what="the photo item opened")
    seen["shown_sha256"] = (await sha_cell.inner_text()).strip()
    seen["shown_case"] = (await detail.get_by_label("案号").inner_text()).strip()
    seen["shown_call"] = (await detail.get_by_label("所属通话").inner_text()).strip()
    seen["shown_received"] = (await detail.get_by_label("接收时间（服务器）").inner_text()).strip()
    seen["shown_offset"] = (await detail.get_by_label("设备时钟偏差").inner_text()).strip()
    photo = detail.get_by_role("img")
    await photo.wait_for(timeout=10_000)
    await until(
        lambda: photo.evaluate("img => img.complete && img.naturalWidth > 0"),
        within=10, what="the photo shown",
    )  # fmt: skip
    seen["photo_width"] = await photo.evaluate("img => img.naturalWidth")
    # The picture's bytes, hashed in the page: what is shown is what was stored.
    local = detail.get_by_label("本机校验")
    await until(lambda: local.get_attribute("data-sha256"), within=10, what="hashed in the page")
    seen["photo_sha256"] = await local.get_attribute("data-sha256")
    seen["photo_check_text"] = await local.inner_text()
    seen["trail_events"] = await detail.locator(
        "table.rec-trail tbody tr td:nth-child(3)"
    ).all_inner_texts()
    seen["trail_people"] = await detail.locator(
        "table.rec-trail tbody tr td:nth-child(4)"
    ).all_inner_texts()
    await detail.get_by_role("button", name="校验证据链").click()
    verdict = detail.get_by_role("status")
    await verdict.filter(has_text="校验").filter(has_not_text="正在").wait_for(timeout=20_000)
    seen["verify_text"] = await verdict.inner_text()
    seen["verify_ok"] = await verdict.get_attribute("data-ok")
    # Again: from where that one ended, saying what it read.
    await detail.get_by_role("button", name="校验证据链").click()
    await verdict.filter(has_text="新增").wait_for(timeout=20_000)
    seen["verify_again_text"] = await verdict.inner_text()
    await detail.get_by_role("button", name="全量校验").click()
    await verdict.filter(has_text="全部").wait_for(timeout=20_000)
    seen["verify_full_text"] = await verdict.inner_text()
    seen["untranslated_evidence"] = await page.evaluate(UNTRANSLATED)
    async with page.expect_download() as download:
        await detail.get_by_role("button", name="下载证明").click()
    proof_path = workdir / "proof.json"
    await (await download.value).save_as(proof_path)
    proof = json.loads(proof_path.read_text())
    seen["proof"] = {"sha256": proof["sha256"], "ok": (proof["chain_check"] or {}).get("ok"),
                     "anchors": len(proof["anchors"])}  # fmt: skip
    await shoot(page, "evidence", phone=True)

    # The call's audit view, from the item.
    await detail.get_by_role("button", name="查看通话审计").click()
    audit = page.get_by_role("region", name="通话审计")
    watched = audit.locator("table.rec-watched tbody tr")
    await watched.first.wait_for(timeout=10_000)
    seen["watched_rows"] = await watched.all_inner_texts()
    seen["timeline_events"] = await audit.locator(
        "table.rec-timeline tbody tr td:nth-child(3)"
    ).all_inner_texts()
    seen["timeline_people"] = await audit.locator(
        "table.rec-timeline tbody tr td:nth-child(4)"
    ).all_inner_texts()
    seen["untranslated_call_audit"] = await page.evaluate(UNTRANSLATED)
    await shoot(page, "call-audit")

    # An instruction from another operator (a bare protocol client) to the officer, whose
    # page shows it and is acknowledged: the dashboard counts it as the CLI does.
    await instruct_and_acknowledge(officer, base)

    # The dashboard, for the supervisor's court today, against the CLI for the same query.
    await page.get_by_role("button", name="统计", exact=True).click()
    stats = page.get_by_role("region", name="统计")
    await stats.get_by_label("起始日期").fill(FROM)
    await stats.get_by_label("截止日期（不含）").fill(TO)
    await stats.get_by_label("法院", exact=True).select_option(SUPERVISOR_COURT)
    await stats.get_by_role("button", name="查询").click()
    await stats.get_by_role("status").filter(has_text=SUPERVISOR_COURT).wait_for(timeout=10_000)
    await stats.locator("tr[data-figure='evidence_items']").wait_for(timeout=10_000)
    shown: dict[str, str] = {}
    for row in await stats.locator("tr[data-figure]").all():
        name = await row.get_attribute("data-figure")
        shown[str(name)] = (await row.locator("td.num").inner_text()).strip()
    seen["dashboard"] = shown
    seen["dashboard_how_evidence"] = await stats.locator(
        "tr[data-figure='evidence_items'] td.how"
    ).inner_text()
    seen["charts"] = await stats.locator(".rec-chart canvas").count()
    seen["untranslated_stats"] = await page.evaluate(UNTRANSLATED)
    report = json.loads(
        await asyncio.to_thread(
            cli, workdir, "stats", "--from", FROM, "--to", TO, "--court", SUPERVISOR_COURT,
            "--format", "json",
        )
    )  # fmt: skip
    seen["cli"] = {k: "\u2013" if v is None else str(v) for k, v in report["figures"].items()}
    await shoot(page, "stats")

    # An item with a position: on a small map in the item view (offline here: no tiles).
    await upload_with_position(base)
    await page.get_by_role("button", name="证据", exact=True).click()
    await browser_view.get_by_role("textbox", name="案号").fill(MAP_CASE)
    await browser_view.get_by_role("button", name="查询").click()
    await browser_view.get_by_role("status").filter(has_text="共 1 条").wait_for(timeout=10_000)
    await rows.first.get_by_role("button").click()
    item_map = detail.get_by_role("img", name="位置地图")
    await item_map.wait_for(timeout=10_000)
    await until(lambda: item_map.get_attribute("data-offline"), within=10, what="the map drawn")
    seen["map"] = {
        "lat": float(await item_map.get_attribute("data-lat") or "nan"),
        "lon": float(await item_map.get_attribute("data-lon") or "nan"),
        "offline": await item_map.get_attribute("data-offline"),
        "note": await detail.get_by_role("note").inner_text(),
        "points": await item_map.locator("path.leaflet-interactive").count(),
        "grid_lines": await item_map.locator("path:not(.leaflet-interactive)").count(),
        "centre": await page.evaluate(
            """() => { const r = document.querySelector(".rec-map path.leaflet-interactive")
                .getBoundingClientRect(); const m = document.querySelector(".rec-map")
                .getBoundingClientRect(); return [Math.round(r.x + r.width / 2 - m.x - m.width / 2),
                Math.round(r.y + r.height / 2 - m.y - m.height / 2)]; }"""
        ),
    }
    local = detail.get_by_label("本机校验")
    await until(lambda: local.get_attribute("data-ok"), within=10, what="the photo hashed")
    seen["map_photo_check"] = await local.inner_text()
    seen["untranslated_map_item"] = await page.evaluate(UNTRANSLATED)
    await shoot(page, "item-map")
    # English is a click away, the records side included.
    await page.get_by_role("button", name="统计", exact=True).click()
    await page.get_by_role("button", name="English").click()
    english = page.get_by_role("region", name="Statistics")
    await english.locator("tr[data-figure='evidence_items'] th").wait_for(timeout=10_000)
    seen["english_figure"] = await english.locator(
        "tr[data-figure='evidence_items'] th"
    ).inner_text()
    seen["english_nav"] = await page.locator("nav.rec-nav").inner_text()


def main() -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory(prefix="cc-records-") as tmp:
        result = asyncio.run(run(Path(tmp)))
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
