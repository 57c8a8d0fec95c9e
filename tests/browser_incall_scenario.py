"""What the operator does in a call beyond talking, in headless Chromium against the real
server, run inside a network namespace by tests/test_browser_incall.py:

    unshare -n -- python -m tests.browser_incall_scenario

An operator, a supervisor (of the court above) and an officer are added with the real CLI and
sign in through the sign-in page. The officer calls and the operator answers. The operator's
camera starts off and the phone says so; the operator turns it on (the phone decodes the
operator's video and drops the notice) and off again (the notice is back); the officer turns
the phone's camera off and the console says so, also after F5 on the console and then on the
phone (which keeps its camera off), then on again. The operator adds
a supervisor: the supervisor's console lists the invitation, they join, and the operator's
call lists them. A moderator (a bare protocol client) runs a conference; the operator pushes
the call into it from the call view and stops again, and the moderator's conference lists the
call's feed and then none; pushed again, the conference ends and the call view says so.
After the call, the officer card's *调取视频* opens the video wall on the officer, large, as
a watch (no call rings); *呼叫* still calls. Last, the supervisor hosts a conference from the
console's desk (会商主持), gives the floor to a site's raised hand and ends it, without leaving
the console. Screenshots at 1920x1080 go to build/screenshots/incall-*.png. Prints ONE JSON
line with what each step saw.
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
from tests.browser import ServerProcess, drive_with_server, token, until
from tests.browser_callflow_scenario import sign_in
from tests.browser_console_scenario import (
    CONSOLE_BUILD,
    CONSOLE_PATH,
    DESKTOP,
    PHONE,
    SETTLED,
    connected,
    console_state,
)
from tests.browser_phone_scenario import state as phone_state
from tests.browser_signin_scenario import SCREENSHOTS, add_account
from tests.wsclient import Client

OPERATOR, OFFICER, SUPERVISOR = ("op-a", "王芳"), ("o-1", "张伟"), ("sup-1", "赵强")
MODERATOR = ("mod-1", "周强")
TITLE = "年终执行调度会商"
HOSTED = "片区执行调度会"
SITE = ("op-z", "孙磊")
SIGNAL_S = 10.0


async def shoot(page: Page, name: str) -> None:
    await page.set_viewport_size(DESKTOP)
    await page.evaluate(SETTLED)
    await page.screenshot(path=str(SCREENSHOTS / f"incall-{name}-1920x1080.png"))


async def run(workdir: Path) -> dict[str, Any]:
    if not CONSOLE_BUILD.exists():
        return {"error": f"{CONSOLE_BUILD} is missing: run `make console`"}
    add_account(workdir, OPERATOR[0], "operator", "--name", OPERATOR[1])
    add_account(workdir, OFFICER[0], "officer", "--name", OFFICER[1])
    add_account(workdir, SUPERVISOR[0], "supervisor", "--name", SUPERVISOR[1], "--court", "P01")
    return await drive_with_server(ServerProcess(workdir), drive)


async def drive(browser: Browser, base: str, seen: dict[str, Any]) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    op = await sign_in(browser, base, CONSOLE_PATH, OPERATOR[0], viewport=DESKTOP)
    sup = await sign_in(browser, base, CONSOLE_PATH, SUPERVISOR[0], viewport=DESKTOP)
    errors: list[str] = []
    for page in (op, sup):
        page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    seen["page_errors"] = errors
    phone = await sign_in(
        browser,
        base,
        "/app/phone.html",
        OFFICER[0],
        viewport=PHONE,
        permissions=["geolocation", "camera", "microphone"],
        has_touch=True,
    )
    await until(lambda: connected(op), within=15, what="the operator's console connected")
    await until(lambda: connected(sup), within=15, what="the supervisor's console connected")
    await until(lambda: _phone_connected(phone), within=15, what="phone connected")

    # The officer calls; the operator answers. The operator's camera is off, and the phone
    # says so on the operator's tile.
    await phone.click("#call")
    ringing = op.get_by_label(f"正在呼入 {OFFICER[1]}")
    await ringing.wait_for(timeout=10_000)
    await ringing.get_by_role("button", name="接听").click()
    await until(lambda: _in_call(op), within=10, what="the operator in the call")
    seen["phone_says_off"] = await until(
        lambda: _camera_notice(phone), within=10, what="the phone says the camera is off"
    )
    await until(lambda: _phone_frames(phone, OPERATOR[0], 0), within=20, what="media up")
    seen["frames_while_off"] = await _phone_video_frames(phone, OPERATOR[0])

    # Camera on: the phone decodes the operator's video and drops the notice.
    await op.get_by_role("button", name="打开摄像头").click()
    seen["camera_on"] = await until(
        lambda: _console_flag(op, "cameraOn", True), within=10, what="camera on"
    )
    seen["phone_frames_on"] = await until(
        lambda: _phone_frames(phone, OPERATOR[0], 10), within=20, what="the operator's video"
    )
    seen["phone_notice_on"] = await _camera_notice(phone)
    await shoot(op, "camera-on")
    await phone.screenshot(path=str(SCREENSHOTS / "incall-phone-camera-on-390x844.png"))

    # Camera off: the notice is back.
    await op.get_by_role("button", name="关闭摄像头").click()
    seen["phone_says_off_again"] = await until(
        lambda: _camera_notice(phone), within=10, what="the phone told the camera is off"
    )
    seen["camera_off"] = await until(
        lambda: _console_flag(op, "cameraOn", False), within=10, what="camera off"
    )
    await phone.screenshot(path=str(SCREENSHOTS / "incall-phone-camera-off-390x844.png"))

    # The officer turns the phone's camera off: the console says so, not a frozen picture;
    # and on again.
    await phone.click("#camera")
    seen["console_says_officer_off"] = await until(
        lambda: _stage_notice(op), within=10, what="the console told the officer's camera is off"
    )
    await shoot(op, "officer-camera-off")
    # F5 on both sides mid-call: the console still says the officer's camera is off (the
    # call's state says so, no camera_changed needed), and the phone keeps it off.
    await op.reload()
    await until(lambda: _in_call(op), within=15, what="the operator back in the call")
    seen["console_after_reload"] = await until(
        lambda: _stage_notice(op), within=10, what="the reloaded console says the camera is off"
    )
    await phone.reload()
    await until(lambda: _phone_in_call(phone), within=15, what="the phone back in the call")
    seen["phone_camera_after_reload"] = (await phone_state(phone)).get("cameraOff")
    seen["phone_button_after_reload"] = (await phone.locator("#camera").inner_text()).strip()
    seen["console_after_phone_reload"] = await _stage_notice(op)
    await phone.click("#camera")
    seen["console_officer_on_again"] = await until(
        lambda: _console_flag(op, "camerasOff", []), within=10, what="the officer's camera on"
    )

    # Add a supervisor: the supervisor's console lists the invitation; they join.
    await op.get_by_role("button", name="邀请指挥长").click()
    invitations = sup.get_by_role("region", name="通话邀请")
    item = invitations.get_by_role("listitem")
    await item.wait_for(timeout=10_000)
    seen["invitation_text"] = (await item.locator(".who").inner_text()).strip()
    await shoot(sup, "invited")
    await item.get_by_role("button", name="加入通话").click()
    await until(lambda: _in_call(sup), within=10, what="the supervisor joined")
    seen["operator_lists"] = await until(
        lambda: _supervisors_of_call(op), within=10, what="the operator told of the supervisor"
    )
    seen["invitation_gone"] = await until(
        lambda: _no_invitation(sup), within=10, what="the invitation gone"
    )

    # Push into a conference a moderator runs, then stop.
    async with aiohttp.ClientSession() as http:
        mod = await _line(http, base)
        created = await mod.request(
            "create_conference", reply="conference_created", title=TITLE, invite_courts=["P0101"]
        )
        conference_id = created["conference"]["conference_id"]
        await mod.request("join_conference", reply="conference_joined", conference_id=conference_id)
        await op.get_by_role("button", name="推送到会商").click()
        await op.get_by_label("选择会商").select_option(label=TITLE)
        await op.get_by_role("button", name="推送", exact=True).click()
        # conference_update carries only what changed (docs/protocol.md, ConferenceChanges).
        update = await mod.expect(
            "conference_update", SIGNAL_S, where=lambda m: bool(m["changes"].get("feeds"))
        )
        feed = update["changes"]["feeds"][0]
        seen["feed"] = [feed["call_id"], feed["officer"]["id"], feed["by"]["id"]]
        seen["call_id"] = (await console_state(op))["call"]["call_id"]
        seen["share_status"] = (await op.locator(".share-state").inner_text()).strip()
        await shoot(op, "shared")
        await op.get_by_role("button", name="停止推送").click()
        cleared = await mod.expect(
            "conference_update", SIGNAL_S, where=lambda m: m["changes"].get("feeds") == []
        )
        seen["feeds_after_stop"] = cleared["changes"]["feeds"]
        seen["shared_after_stop"] = await until(
            lambda: _console_flag(op, "sharedTo", None), within=10, what="sharing stopped"
        )
        # Pushed again, and the conference ends: the call view says so.
        await op.get_by_role("button", name="推送到会商").click()
        await op.get_by_label("选择会商").select_option(label=TITLE)
        await op.get_by_role("button", name="推送", exact=True).click()
        await mod.expect(
            "conference_update", SIGNAL_S, where=lambda m: bool(m["changes"].get("feeds"))
        )
        await mod.request("end_conference", conference_id=conference_id)
        ended = op.locator(".share-ended")
        await ended.wait_for(timeout=10_000)
        seen["share_ended"] = (await ended.inner_text()).strip()
        await mod.close()

    # After the call: the officer card pulls video as a watch, large on the wall.
    await op.get_by_role("button", name="挂断").click()
    await until(lambda: _no_call(op), within=10, what="the call ended")
    await until(lambda: _phone_idle(phone), within=10, what="the phone's call ended")
    roster = op.get_by_role("region", name="在线干警")
    await roster.get_by_role("button", name=OFFICER[1]).click()
    card = op.get_by_role("complementary")
    await card.get_by_role("button", name="调取视频").click()
    tile = await until(lambda: _live_tile(op), within=20, what="the officer's video on the wall")
    seen["wall_tile"] = tile
    seen["phone_ringing_on_pull"] = (await phone_state(phone)).get("ringing")
    seen["phone_watched"] = len((await phone_state(phone)).get("watches") or [])
    await shoot(op, "pulled")
    # Back to the map: 呼叫 still places a call, which rings at the phone.
    await op.get_by_role("button", name="返回地图").click()
    await card.get_by_role("button", name="呼叫", exact=True).click()
    seen["call_rings_phone"] = await until(
        lambda: _phone_ringing(phone), within=10, what="the card's call rings"
    )
    await moderate_in_the_console(sup, base, seen)


async def moderate_in_the_console(sup: Page, base: str, seen: dict[str, Any]) -> None:
    """The supervisor hosts a conference from the console's desk and moderates its floor
    there: a site (a bare protocol client) raises its hand, is given the floor, and the
    conference is ended, all without leaving the console."""
    desk = sup.get_by_role("region", name="会商主持")
    # Folded while none of the supervisor's conferences runs (mod-1's is not theirs).
    await desk.get_by_role("button", name="展开").click()
    await desk.get_by_label("会商主题").fill(HOSTED)
    await desk.get_by_role("button", name="发起会商（本院及下级法院）").click()
    await desk.get_by_role("heading", name=HOSTED).wait_for(timeout=10_000)
    conference_id = (await console_state(sup))["moderating"]["id"]
    async with aiohttp.ClientSession() as http:
        site = await _line(http, base, SITE, Role.OPERATOR, "P0101")
        await site.request(
            "join_conference", reply="conference_joined", conference_id=conference_id
        )
        await site.request("raise_hand", conference_id=conference_id)
        row = desk.get_by_role("listitem", name=SITE[1])
        await row.get_by_text("举手第 1 位").wait_for(timeout=10_000)
        seen["desk_hand"] = (await row.inner_text()).split()
        await shoot(sup, "moderating")
        await row.get_by_role("button", name="给予发言").click()
        granted = await site.expect(
            "floor_status", SIGNAL_S, where=lambda m: m["floor"]["state"] == "permitted"
        )
        seen["site_floor"] = granted["floor"]["state"]
        await row.get_by_text("发言中").wait_for(timeout=10_000)
        seen["desk_holders"] = (await console_state(sup))["moderating"]["holders"]
        await desk.get_by_role("button", name="结束会商").click()
        await desk.get_by_role("button", name="确定").click()
        ended = await site.expect("conference_ended", SIGNAL_S)
        seen["site_told_ended"] = [ended["reason"], ended["by"]]
        seen["desk_after_end"] = await until(
            lambda: _not_moderating(sup), within=10, what="the desk closed"
        )
        await site.close()


async def _line(
    http: aiohttp.ClientSession,
    base: str,
    who: tuple[str, str] = MODERATOR,
    role: Role = Role.SUPERVISOR,
    court: str = "P01",
) -> Client:
    user, name = who
    query = f"token={token(user, role, court, name)}&v=1"
    ws_base = base.replace("http://", "ws://")
    client = Client(await http.ws_connect(f"{ws_base}/ws?{query}"), "json", user)
    client.welcome = await client.expect("welcome", SIGNAL_S)
    return client


async def _not_moderating(page: Page) -> bool:
    return (await console_state(page)).get("moderating", "missing") is None


async def _phone_connected(phone: Page) -> bool:
    s = await phone_state(phone)
    return bool(s.get("connected")) and (s.get("user") or {}).get("id") == OFFICER[0]


async def _phone_in_call(phone: Page) -> bool:
    s = await phone_state(phone)
    return bool(s.get("connected")) and (s.get("call") or {}).get("state") == "active"


async def _phone_idle(phone: Page) -> bool:
    s = await phone_state(phone)
    return bool(s) and not s.get("call") and not s.get("outgoing")


async def _phone_ringing(phone: Page) -> list[str] | None:
    ringing: list[str] = (await phone_state(phone)).get("ringing") or []
    return ringing or None


async def _camera_notice(phone: Page) -> str | None:
    labels = await phone.locator("#remote .camera-off-label").all_inner_texts()
    return labels[0].strip() if labels else None


async def _phone_video_frames(phone: Page, publisher: str) -> int:
    stats = await phone.evaluate("window.cc.inboundStats()")
    return max(
        (
            s.get("framesDecoded") or 0
            for s in stats
            if s["kind"] == "video" and s.get("stream") == publisher
        ),
        default=0,
    )


async def _phone_frames(phone: Page, publisher: str, more_than: int) -> int | None:
    """The phone's decoded frames of `publisher`'s video once above `more_than` (0: the
    media is up at all, the operator's audio arriving)."""
    if more_than == 0:
        s = await phone_state(phone)
        return 1 if publisher in ((s.get("media") or {}).get("remoteStreams") or []) else None
    frames = await _phone_video_frames(phone, publisher)
    return frames if frames > more_than else None


async def _stage_notice(page: Page) -> str | None:
    notice = page.locator(".call-stage .call-waiting")
    text = (await notice.inner_text()).strip() if await notice.is_visible() else ""
    return text if text.endswith("已关闭摄像头") else None


async def _console_flag(page: Page, key: str, wanted: Any) -> Any:
    value = (await console_state(page)).get(key, "missing")
    return True if value == wanted else None


async def _in_call(page: Page) -> bool:
    call = (await console_state(page)).get("call")
    return bool(call and call["state"] == "active")


async def _no_call(page: Page) -> bool:
    return (await console_state(page)).get("call") is None


async def _supervisors_of_call(page: Page) -> list[str] | None:
    call = (await console_state(page)).get("call") or {}
    names = [s["name"] for s in call.get("supervisors", [])]
    return names or None


async def _no_invitation(page: Page) -> bool:
    return (await console_state(page)).get("invitations") == [] and await page.get_by_role(
        "region", name="通话邀请"
    ).is_hidden()


async def _live_tile(page: Page) -> dict[str, Any] | None:
    wall = await page.evaluate("window.ccConsole.wall()")
    tiles = wall.get("tiles") or []
    if wall.get("open") and len(tiles) == 1 and tiles[0]["state"] == "live":
        return {"officer": tiles[0]["officer"], "watch": bool(tiles[0]["watchId"])}
    return None


def main() -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory(prefix="cc-incall-") as tmp:
        result = asyncio.run(run(Path(tmp)))
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
