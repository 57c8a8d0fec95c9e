"""The operator console in headless Chromium, run inside a network namespace by
tests/test_browser_console.py:

    unshare -n -- python -m tests.browser_console_scenario

An operator account is added with the real CLI (`commandcenter user add --password-stdin`)
and the real server started with court positions and short queue thresholds. Two officers
sign in first (pages of the web client with `#token=` links, fake camera and microphone) and
report positions; a supervisor's page of today's client checks that its roster now arrives.
Then the operator opens the console, is sent to the sign-in page, signs in and is driven as
a person would: the roster and the offline map show both officers; an officer calls and the
console shows the call ringing with a waiting time that turns amber and red; the operator
accepts and the officer's video is decoded; a second officer's call queues behind it and
the console shows its place and age; an SOS takes over the screen with the alarm, is
answered and cleared; F5 keeps the roster; English is a click away. Screenshots at
1920x1080 and 390x844 go to build/screenshots/. Prints ONE JSON line with what each step saw.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import traceback
import zlib
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from playwright.async_api import Browser, Locator, Page, ViewportSize, async_playwright
from playwright.async_api import Error as PlaywrightError

from commandcenter.auth import Role
from tests.browser import (
    APP_PATH,
    REPO,
    SECRET,
    ServerProcess,
    drive_with_server,
    free_port,
    launch,
    token,
    until,
)

CONSOLE_PATH = "/app/console/index.html"
CONSOLE_BUILD = REPO / "commandcenter" / "static" / "console" / "index.html"
COURT = "P0101"
OPERATOR = ("op-1", "王芳")
# Two officers a few streets apart in Nanjing, and their court between them.
OFFICERS = {"o-1": ("张伟", 32.0603, 118.7969), "o-2": ("李娜", 32.0480, 118.7790)}
COURT_POSITION = f"{COURT} 32.0550 118.7880"
PASSWORD = "a password long enough"
SCREENSHOTS = REPO / "build" / "screenshots"
DESKTOP: ViewportSize = {"width": 1920, "height": 1080}
PHONE: ViewportSize = {"width": 390, "height": 844}
AMBER_S, RED_S = 2, 4
# A tile server that does not answer (a free port: nothing listens on it): the console must
# fall back to its offline map, and nothing else may be refused.
DEAD_TILES = "http://127.0.0.1:{port}/{{z}}/{{x}}/{{y}}.png"


def add_operator(workdir: Path, *, officer: str | None = None) -> None:
    """The operator's account; with `officer`, that officer's too (its page then signs in
    with a password, and F5 finds its cookie)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMANDCENTER_")}
    env |= {
        "COMMANDCENTER_SERVER_DATA_DIR": str(workdir / "var"),
        "COMMANDCENTER_RECORDER_SQLITE_PATH": str(workdir / "trace.sqlite3"),
        "COMMANDCENTER_AUTH_JWT_SECRET": SECRET,
    }
    accounts = [(*OPERATOR, "operator")]
    if officer is not None:
        accounts.append((officer, OFFICERS[officer][0], "officer"))
    for user, name, role in accounts:
        subprocess.run(
            [sys.executable, "-m", "commandcenter", "user", "add", "--user", user, "--name", name,
             "--role", role, "--court", COURT, "--password-stdin"],
            input=PASSWORD + "\n", capture_output=True, text=True, env=env, cwd=workdir,
            timeout=60, check=True,
        )  # fmt: skip


async def client_page(browser: Browser, base: str, user: str, role: Role, name: str) -> Page:
    """A page of today's web client signed in with a `#token=` link."""
    context = await browser.new_context()
    page = await context.new_page()
    court = "P01" if role is Role.SUPERVISOR else COURT
    await page.goto(f"{base}{APP_PATH}#token={token(user, role, court, name)}", timeout=10_000)
    await until(
        lambda: page.evaluate("window.cc.state().connected"), within=10, what=f"{user} connected"
    )
    return page


async def signed_in_page(browser: Browser, base: str, user: str) -> Page:
    """A page of today's web client signed in with a password (a cookie: F5 keeps it)."""
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{base}/app/signin.html?next={APP_PATH}", timeout=10_000)
    await page.fill("#user", user)
    await page.fill("#password", PASSWORD)
    await page.click("#submit")
    await until(lambda: client_connected(page), within=15, what=f"{user} signed in and connected")
    return page


async def client_connected(page: Page) -> bool:
    try:
        return bool(await page.evaluate("window.cc && window.cc.state().connected"))
    except PlaywrightError:
        # Navigating from the sign-in page: the old context is gone.
        return False


async def conference_page_user(page: Page) -> str | None:
    try:
        state: dict[str, Any] = await page.evaluate("window.conf ? window.conf.state() : {}")
    except PlaywrightError:
        return None
    user = state.get("user") if state.get("connected") else None
    return user["id"] if user else None


async def console_state(page: Page) -> dict[str, Any]:
    try:
        found: dict[str, Any] = await page.evaluate(
            "window.ccConsole ? window.ccConsole.state() : {}"
        )
    except PlaywrightError:
        return {}
    return found


async def video_frames(page: Page) -> int:
    stats = await page.evaluate("window.ccConsole.inboundStats()")
    return max((s.get("framesDecoded") or 0 for s in stats if s["kind"] == "video"), default=0)


# Two animation frames: the resize observed, the map re-framed and painted.
SETTLED = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"


async def shoot(page: Page, name: str) -> None:
    """The console at both sizes, then back to the desktop."""
    await page.set_viewport_size(DESKTOP)
    await page.evaluate(SETTLED)
    await page.screenshot(path=str(SCREENSHOTS / f"console-{name}-1920x1080.png"))
    await page.set_viewport_size(PHONE)
    await page.evaluate(SETTLED)
    await page.screenshot(path=str(SCREENSHOTS / f"console-{name}-390x844.png"), full_page=True)
    await page.set_viewport_size(DESKTOP)
    await page.evaluate(SETTLED)


async def run(workdir: Path) -> dict[str, Any]:
    if not CONSOLE_BUILD.exists():
        return {"error": f"{CONSOLE_BUILD} is missing: run `make console`"}
    add_operator(workdir, officer="o-1")
    server = ServerProcess(
        workdir,
        {
            "COMMANDCENTER_CONSOLE_COURT_POSITIONS": COURT_POSITION,
            "COMMANDCENTER_CONSOLE_QUEUE_AMBER_S": str(AMBER_S),
            "COMMANDCENTER_CONSOLE_QUEUE_RED_S": str(RED_S),
            "COMMANDCENTER_CONSOLE_TILE_URL": DEAD_TILES.format(port=free_port()),
        },
    )
    return await drive_with_server(server, drive)


async def drive(browser: Browser, base: str, seen: dict[str, Any]) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    officers: dict[str, Page] = {}
    for user, (name, lat, lon) in OFFICERS.items():
        if user == "o-1":
            page = await signed_in_page(browser, base, user)
        else:
            page = await client_page(browser, base, user, Role.OFFICER, name)
        await page.evaluate(f"window.cc.position({lat}, {lon}, 8)")
        officers[user] = page

    # Today's page, opened after the officers: its roster reply used to be lost.
    supervisor = await client_page(browser, base, "s-1", Role.SUPERVISOR, "赵强")
    seen["old_client_roster"] = sorted(
        await until(
            lambda: supervisor_roster(supervisor), within=10, what="today's client has a roster"
        )
    )
    # It stays, as the witness of what the server told watchers while the console was away.

    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    console_log: list[str] = []
    page.on("console", lambda m: console_log.append(f"{m.type}: {m.text} @ {m.location['url']}"))
    page.on("pageerror", lambda e: console_log.append(f"pageerror: {e}"))
    seen["console_log"] = console_log
    await page.goto(f"{base}{CONSOLE_PATH}", timeout=10_000)
    await until(lambda: on_signin(page), within=10, what="sent to the sign-in page")
    seen["signin_url"] = page.url.removeprefix(base)
    await page.fill("#user", OPERATOR[0])
    await page.fill("#password", PASSWORD)
    await page.click("#submit")
    await until(lambda: connected(page), within=15, what="the console connected")
    seen["console_url"] = page.url.removeprefix(base)
    # The 401 of the first token request, before signing in, is the expected way there.
    console_log.clear()
    seen["heading"] = await page.locator("h1").text_content()

    roster = page.get_by_role("region", name="在线干警")
    for name, _, _ in OFFICERS.values():
        await roster.get_by_role("button", name=name).wait_for(timeout=10_000)
    seen["roster_names"] = sorted(
        await page.locator("section.roster tbody tr[data-officer] td:first-child").all_inner_texts()
    )
    seen["roster_statuses"] = await page.locator("section.roster tbody .badge").all_inner_texts()
    await until(lambda: map_drawn(page, 2), within=10, what="two officers on the map")
    state = await until(lambda: offline_map(page), within=15, what="the offline map")
    seen["map_offline"] = state["mapOffline"]
    seen["map_officers"] = sorted(state["mapOfficers"])
    seen["map_markers_visible"] = await page.locator(".leaflet-marker-pane [data-officer]").count()
    seen["map_court_markers"] = await page.locator(".leaflet-marker-pane .court-marker").count()
    seen["offline_note_visible"] = await page.get_by_role("note").is_visible()
    seen["my_status"] = state["myStatus"]
    # The search box narrows the roster.
    await page.get_by_label("搜索姓名、编号或法院").fill("李")
    seen["search_rows"] = await page.locator("section.roster tbody tr[data-officer]").count()
    await page.get_by_label("搜索姓名、编号或法院").fill("")
    await shoot(page, "roster")

    # Today's track: o-1 moves, the console shows the line of the positions the server
    # recorded (GET /api/officers/o-1/track), then hides it.
    _, lat1, lon1 = OFFICERS["o-1"]
    moved = (lat1 + 0.004, lon1 + 0.003)
    await officers["o-1"].evaluate(f"window.cc.position({moved[0]}, {moved[1]}, 8)")
    await until(lambda: console_sees(page, "o-1", "online", moved[0]), within=10, what="o-1 moved")
    await page.locator('.leaflet-marker-pane [data-officer="o-1"]').click()
    await page.get_by_role("button", name="今日轨迹").click()
    track = await until(lambda: track_drawn(page), within=10, what="o-1's track on the map")
    seen["track"] = track
    seen["track_lines"] = await page.locator("path.officer-track").count()
    seen["track_note"] = await page.locator(".map-track").inner_text()
    await shoot(page, "track")
    await page.get_by_role("button", name="隐藏轨迹").click()
    await until(lambda: track_gone(page), within=5, what="the track hidden")
    await page.get_by_role("button", name="关闭").click()

    # An officer calls: it rings on the console, with a waiting time that turns amber, red.
    o1_name = OFFICERS["o-1"][0]
    await officers["o-1"].evaluate("window.cc.callCenter()")
    ringing = page.get_by_label(f"正在呼入 {o1_name}")
    await ringing.wait_for(timeout=10_000)
    seen["queue_waiting_text"] = await ringing.locator(".wait").inner_text()
    seen["queue_sound"] = (await console_state(page))["sound"]
    await until(lambda: has_class(ringing.locator(".wait"), "wait-amber"), within=10, what="amber")
    seen["queue_amber"] = True
    await until(lambda: has_class(ringing.locator(".wait"), "wait-red"), within=10, what="red")
    seen["queue_red"] = True
    await shoot(page, "queue")
    await ringing.get_by_role("button", name="接听").click()
    await until(lambda: in_call(page), within=10, what="the call answered")
    first = await until(lambda: video_frames(page), within=20, what="the officer's video")
    await until(
        lambda: more_frames(page, first + 20), within=20, what="the officer's video goes on"
    )
    seen["frames_decoded"] = await video_frames(page)
    seen["my_status_in_call"] = (await console_state(page))["myStatus"]
    await page.get_by_role("button", name="静音").click()
    seen["muted_label"] = await page.locator(".call-bar .talk").inner_text()
    # A still of the officer's video, kept as evidence and shown from the evidence API.
    await page.get_by_role("button", name="截图取证").click()
    shot = page.get_by_role("img", name="通话截图")
    await shot.wait_for(timeout=15_000)
    seen["snapshot_width"] = await shot.evaluate("img => img.complete ? img.naturalWidth : 0")
    seen["snapshot_caption"] = await page.locator(".snapshot span").inner_text()
    await shoot(page, "call")

    # F5 on both sides in the call: each page resumes its session (the resume token is kept
    # in the tab), the call goes on, and the officer's video comes back on the console.
    call_id = (await console_state(page))["call"]["call_id"]
    await page.reload()
    await until(lambda: connected(page), within=15, what="the console back after F5")
    state = await console_state(page)
    seen["f5_console"] = {
        "resumed": state["resumed"],
        "same_call": (state["call"] or {}).get("call_id") == call_id,
    }
    frames = await until(lambda: video_frames(page), within=20, what="video after F5")
    officer = officers["o-1"]
    await officer.reload()
    await until(lambda: client_connected(officer), within=15, what="o-1 back after F5")
    o1 = await officer.evaluate("window.cc.state()")
    seen["f5_officer_same_call"] = (o1["call"] or {}).get("call_id") == call_id
    await until(lambda: more_frames(page, frames + 20), within=30, what="o-1's video after its F5")
    seen["f5_call_state"] = ((await console_state(page))["call"] or {}).get("state")
    # The media worker relaying the call is killed: the console and the officer's page are
    # told `media_restart`, each offers again from a new peer connection, and the officer's
    # video comes back on the console (its new connection counts frames from nothing).
    decoded = await video_frames(page)
    pid = await until(lambda: call_worker(base), within=10, what="the call's media worker")
    os.kill(pid, signal.SIGKILL)
    await until(lambda: fewer_frames(page, decoded), within=15, what="a new peer connection")
    await until(lambda: more_frames(page, 20), within=20, what="o-1's video after the worker died")
    seen["worker_killed_frames"] = await video_frames(page)
    seen["worker_killed_call_state"] = ((await console_state(page))["call"] or {}).get("state")
    # The server records the call (an evidence store, media.record): the call view says so.
    seen["recording_light"] = await page.locator(".call-head .recording").inner_text()
    # A second officer calls while the only operator is busy: the call queues, and the
    # console shows it with its place and how long it has waited; cancelled, it goes.
    await officers["o-2"].evaluate("window.cc.callCenter()")
    queued = page.locator('.queue-item.elsewhere[data-state="queued"]')
    await queued.wait_for(timeout=10_000)
    seen["queued_call"] = {
        "who": await queued.locator(".who").inner_text(),
        "note": await queued.locator(".note").inner_text(),
        "wait": await queued.locator(".wait").inner_text(),
    }
    await shoot(page, "queued")
    await officers["o-2"].evaluate("window.cc.cancel()")
    await queued.wait_for(state="detached", timeout=10_000)
    await page.get_by_role("button", name="挂断").click()
    await until(lambda: call_over(page), within=10, what="hung up")

    # The conferences page, from the top bar, in this tab: signed in by the same cookie (no
    # token link), resuming the console's session; back, the console resumes it again.
    session_before = (await console_state(page))["sessionId"]
    await page.get_by_role("link", name="视频会议").click()
    await until(lambda: conference_page_user(page), within=15, what="the conferences page")
    seen["conferences_user"] = await conference_page_user(page)
    await page.go_back()
    await until(lambda: connected(page), within=15, what="the console back from conferences")
    state = await console_state(page)
    seen["conferences_kept_session"] = state["sessionId"] == session_before and state["resumed"]

    # An SOS takes over the screen, with the alarm; the operator answers it, then clears it.
    await officers["o-2"].evaluate("window.cc.emergency('test: exit blocked')")
    dialog = page.get_by_role("alertdialog")
    await dialog.wait_for(timeout=10_000)
    seen["sos_heading"] = await dialog.get_by_role("heading").inner_text()
    seen["sos_text"] = await dialog.locator(".sos-who").inner_text()
    # The officer's note is in the alarm, and one added after the SOS replaces it.
    seen["sos_note"] = await until(
        lambda: text_of(dialog.locator(".sos-note"), "exit blocked"),
        within=10,
        what="the SOS note in the alarm",
    )
    await officers["o-2"].evaluate("window.cc.emergencyNote('两人受伤，需要救护车')")
    seen["sos_note_added"] = await until(
        lambda: text_of(dialog.locator(".sos-note"), "救护车"),
        within=10,
        what="the added note in the alarm",
    )
    state = await until(lambda: alarm_on(page), within=5, what="the alarm sounding")
    seen["sos_sound"] = state["sound"]
    seen["sos_sound_running"] = state["soundRunning"]
    _, lat, lon = OFFICERS["o-2"]
    seen["sos_map_centre_at_first"] = state["mapCentre"]
    seen["sos_map_centre"] = await until(
        lambda: centred_on(page, lat, lon), within=5, what="the map on the officer in danger"
    )
    accept = dialog.get_by_role("button", name="接听紧急呼叫")
    await accept.wait_for(timeout=10_000)
    await shoot(page, "sos")
    await accept.click()
    await until(lambda: in_call(page), within=10, what="the emergency call answered")
    await dialog.wait_for(state="hidden", timeout=5_000)
    seen["sos_dialog_after_answer"] = await dialog.is_visible()
    strip = page.locator(".sos-strip")
    seen["sos_strip"] = await until(
        lambda: text_of(strip, "接警"), within=10, what="the strip saying who took the SOS"
    )
    # Hung up but not cleared, then F5: the console learns from the roster who took the SOS
    # on and shows it so, not as a fresh alarm.
    await page.get_by_role("button", name="挂断").click()
    await until(lambda: call_over(page), within=10, what="hung up the emergency call")
    await page.reload()
    await until(lambda: connected(page), within=15, what="the console back after F5 in an SOS")
    seen["sos_strip_after_reload"] = await until(
        lambda: text_of(strip, "接警"), within=10, what="the taken SOS after F5"
    )
    seen["sos_dialog_after_reload"] = await dialog.is_visible()
    await shoot(page, "sos-taken-after-reload")
    # Cleared as a false alarm: the console asks why; the officer's page is told.
    page.once("dialog", lambda d: asyncio.ensure_future(d.accept("误触求助键")))
    await page.locator(".sos-strip").get_by_role("button", name="误报").click()
    await until(lambda: no_emergency(page), within=10, what="the emergency cleared")
    seen["sos_cleared"] = True

    async def officer_told() -> str | None:
        found: str | None = await officers["o-2"].evaluate("window.cc.state().emergencyOutcome")
        return found

    seen["sos_outcome_at_officer"] = await until(
        officer_told, within=10, what="the officer told how it ended"
    )
    seen["sound_after_clear"] = (await console_state(page))["sound"]

    # The operator picks an officer on the map and calls them; the officer answers.
    await page.get_by_label(f"执行干警 {o1_name}").click()
    card = page.get_by_role("complementary")
    await card.get_by_role("button", name="呼叫").click()
    seen["outgoing_text"] = await page.locator(".queue-item.outgoing .who").inner_text()
    ringing_at_officer = await until(
        lambda: officer_ringing(officers["o-1"]), within=10, what="the officer rung"
    )
    await officers["o-1"].evaluate(f"window.cc.accept('{ringing_at_officer}')")
    await until(lambda: in_call(page), within=10, what="the officer answered")
    first = await until(lambda: video_frames(page), within=20, what="video of the called officer")
    seen["called_officer_video"] = first > 0
    await page.get_by_role("button", name="挂断").click()
    await until(lambda: call_over(page), within=10, what="hung up the call to the officer")

    # F5: the cookie signs the console in again and the roster comes back whole.
    await page.reload()
    await until(lambda: connected(page), within=15, what="connected after F5")
    await until(lambda: map_drawn(page, 2), within=10, what="both officers after F5")
    seen["roster_after_reload"] = sorted(
        e["officer"]["id"] for e in (await console_state(page))["roster"]
    )

    # English, remembered across a reload.
    await page.get_by_role("button", name="English").click()
    seen["english_roster_heading"] = await page.locator("#roster-heading").inner_text()
    await shoot(page, "english")
    await page.reload()
    await until(lambda: connected(page), within=15, what="connected after the second F5")
    seen["english_after_reload"] = await page.locator("h1").inner_text()
    await page.get_by_role("button", name="中文").click()

    # A dropped connection whose token no longer works: while the console is away one officer
    # moves and the other loses signal; it comes back (4401, a new token from the cookie,
    # resume) with the roster as it is now, though it missed those updates.
    before = await console_state(page)
    await page.evaluate("window.ccConsole.dropConnection(true)")
    moved_to = OFFICERS["o-1"][1] + 0.01
    await officers["o-1"].evaluate(f"window.cc.position({moved_to}, {OFFICERS['o-1'][2]}, 8)")
    await officers["o-2"].context.close()
    o2_lat = OFFICERS["o-2"][1]
    await until(
        lambda: supervisor_sees(supervisor, "o-1", "online", moved_to), within=10, what="o-1 moved"
    )
    await until(
        lambda: supervisor_sees(supervisor, "o-2", "away", o2_lat), within=10, what="o-2 away"
    )
    seen["console_missed_updates"] = not await console_sees(page, "o-2", "away", o2_lat)
    await page.evaluate("window.ccConsole.resumeConnection()")
    await until(lambda: connected(page), within=15, what="connected again")
    await until(lambda: console_sees(page, "o-2", "away", o2_lat), within=10, what="o-2 away")
    await until(lambda: console_sees(page, "o-1", "online", moved_to), within=10, what="o-1 moved")
    after = await console_state(page)
    seen["reconnect"] = {
        "same_session": after["sessionId"] == before["sessionId"],
        "resumed": after["resumed"],
        "new_tokens": after["tokensFetched"] - before["tokensFetched"],
        "roster_replies": after["rosterReplies"] - before["rosterReplies"],
    }
    seen["errors_in_console"] = [
        line
        for line in console_log
        if "error" in line.lower()
        and not ("ERR_CONNECTION_REFUSED" in line and line.endswith(".png"))
    ]
    seen["tile_requests_refused"] = sum("ERR_CONNECTION_REFUSED" in line for line in console_log)
    await context.close()
    await officers["o-1"].context.close()
    await supervisor.context.close()


async def supervisor_roster(page: Page) -> list[str] | None:
    found: list[dict[str, Any]] = await page.evaluate("window.cc.state().roster")
    return [e["officer"]["id"] for e in found] if len(found) == len(OFFICERS) else None


async def supervisor_sees(page: Page, officer: str, status: str, lat: float) -> bool:
    found: list[dict[str, Any]] = await page.evaluate("window.cc.state().roster")
    return any(
        e["officer"]["id"] == officer
        and e["status"] == status
        and (e["position"] or {}).get("lat") == lat
        for e in found
    )


async def track_drawn(page: Page) -> list[list[float]] | None:
    track: list[list[float]] = (await console_state(page)).get("mapTrack", [])
    return track or None


async def track_gone(page: Page) -> bool:
    return not (await console_state(page)).get("mapTrack")


async def console_sees(page: Page, officer: str, status: str, lat: float) -> bool:
    for e in (await console_state(page)).get("roster", []):
        if e["officer"]["id"] == officer:
            return bool(e["status"] == status and e["position"]["lat"] == lat)
    return False


async def on_signin(page: Page) -> bool:
    try:
        return "/app/signin.html" in page.url and await page.locator("#signin").count() == 1
    except PlaywrightError:
        return False


async def text_of(locator: Locator, wanted: str) -> str | None:
    """The locator's text once it holds `wanted` (None before, or while it is not there)."""
    if not await locator.count():
        return None
    text = await locator.first.inner_text()
    return text if wanted in text else None


async def connected(page: Page) -> bool:
    return (await console_state(page)).get("connection") == "connected"


async def map_drawn(page: Page, count: int) -> bool:
    return len((await console_state(page)).get("mapOfficers", [])) == count


async def has_class(locator: Any, cls: str) -> bool:
    return cls in ((await locator.get_attribute("class")) or "")


async def officer_ringing(page: Page) -> str | None:
    ringing: list[str] = await page.evaluate("window.cc.state().ringing")
    return ringing[0] if ringing else None


async def offline_map(page: Page) -> dict[str, Any] | None:
    state = await console_state(page)
    return state if state.get("mapOffline") else None


async def in_call(page: Page) -> bool:
    return (await console_state(page)).get("call") is not None


async def call_over(page: Page) -> bool:
    return (await console_state(page)).get("call") is None


async def more_frames(page: Page, at_least: int) -> bool:
    return await video_frames(page) >= at_least


async def fewer_frames(page: Page, than: int) -> bool:
    return await video_frames(page) < than


async def call_worker(base: str) -> int | None:
    """The process id of the media worker with a room (/healthz)."""
    async with aiohttp.ClientSession() as http, http.get(f"{base}/healthz") as resp:
        workers = (await resp.json())["media_workers"]
    return next((int(w["pid"]) for w in workers if w["rooms"]), None)


async def alarm_on(page: Page) -> dict[str, Any] | None:
    state = await console_state(page)
    return state if state.get("sound") == "alarm" else None


async def centred_on(page: Page, lat: float, lon: float) -> list[float] | None:
    """The map's centre once it is on (lat, lon): the jump is animated."""
    centre: list[float] = (await console_state(page))["mapCentre"]
    return centre if abs(centre[0] - lat) < 1e-4 and abs(centre[1] - lon) < 1e-4 else None


async def no_emergency(page: Page) -> bool:
    return (await console_state(page)).get("emergencies") == []


# ---- a tile server that answers --------------------------------------------------------


def tile_png() -> bytes:
    """One 256x256 light grey PNG, made here: any tile will do to show tiles are drawn."""
    row = b"\x00" + b"\xd8\xe0\xe8" * 256

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 256, 256, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * 256))
        + chunk(b"IEND", b"")
    )


async def run_with_tiles(workdir: Path) -> dict[str, Any]:
    """The province's tile server answers: the console draws its tiles (the policy lets the
    tile server's images in) and does not fall back to the offline map."""
    seen: dict[str, Any] = {}
    png = tile_png()
    requests: list[str] = []

    async def tile(request: web.Request) -> web.Response:
        requests.append(request.path)
        return web.Response(body=png, content_type="image/png")

    tiles = web.Application()
    tiles.router.add_get("/{z}/{x}/{y}.png", tile)
    runner = web.AppRunner(tiles)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    add_operator(workdir)
    server = ServerProcess(
        workdir,
        {
            "COMMANDCENTER_CONSOLE_TILE_URL": f"http://127.0.0.1:{port}/{{z}}/{{x}}/{{y}}.png",
            "COMMANDCENTER_CONSOLE_COURT_POSITIONS": COURT_POSITION,
        },
    )
    try:
        await server.wait_healthy()
        async with async_playwright() as playwright:
            browser = await launch(playwright)
            try:
                context = await browser.new_context(viewport=DESKTOP)
                page = await context.new_page()
                errors: list[str] = []
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                await page.goto(f"{server.base}{CONSOLE_PATH}", timeout=10_000)
                await until(lambda: on_signin(page), within=10, what="sent to the sign-in page")
                errors.clear()
                await page.fill("#user", OPERATOR[0])
                await page.fill("#password", PASSWORD)
                await page.click("#submit")
                await until(lambda: connected(page), within=15, what="the console connected")
                loaded = page.locator(".leaflet-tile-loaded")
                await until(lambda: loaded.count(), within=10, what="tiles drawn")
                seen["tiles_drawn"] = await loaded.count()
                seen["tiles_requested"] = len(requests)
                seen["tiles_offline"] = (await console_state(page))["mapOffline"]
                seen["tiles_errors"] = errors
                await page.screenshot(path=str(SCREENSHOTS / "console-tiles-1920x1080.png"))
            finally:
                await browser.close()
    except Exception as exc:
        seen["error"] = f"tiles: {type(exc).__name__}: {exc}"
        seen["traceback"] = traceback.format_exc(limit=6)
    finally:
        server.stop()
        await runner.cleanup()
    return seen


def main() -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory(prefix="cc-console-") as tmp:
        offline, tiled = Path(tmp) / "offline", Path(tmp) / "tiles"
        offline.mkdir()
        tiled.mkdir()
        result = asyncio.run(run(offline))
        if "error" not in result:
            result.update(asyncio.run(run_with_tiles(tiled)))
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
