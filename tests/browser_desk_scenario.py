"""The whole moderator's view in the console's desk (会商主持), in headless Chromium against
the real server, run inside a network namespace by tests/test_browser_desk.py:

    unshare -n -- python -m tests.browser_desk_scenario

A supervisor (added with the real CLI, signed in through the sign-in page) finds the desk
folded (none of their conferences runs), unfolds it and hosts a conference; two sites (bare
protocol clients) join and one raises a hand. The supervisor spotlights a site (every site is
told), locks the conference (a site trying to join is refused `conference is locked`; the
sites are told) and unlocks it, names a co-moderator and takes it back, removes a site after
confirming, picks a signed-in user in *邀请参会* by part of the name, rings them and
withdraws it; then types part of a Chinese name in the picker, which lists only whom they may
invite (an operator signed into the console and an officer of a court below; not a site
already in, nor an operator of a court outside theirs), picks the operator with the arrows and
Enter, and the operator's console rings (会商邀请) until they decline; the picker at 390x844
must fit the screen (build/screenshots/desk-picker-390x844.png). Then it invites a
witness in *邀请列席*: the panel shows the link's QR code; the
witness's page opens the link, sees the conference and joins it as a witness (the desk lists
it); *撤销* revokes it and the witness's page is closed 4403. A site with a (fake) camera
joins from the conferences page and is spotlit: the desk's video shows its picture; given the
floor, its voice plays on the desk (静音 / 取消静音). Last,
300 sites join and raise their hands at once: the desk shows each row with its place, and
the page's long tasks meanwhile are measured. Screenshots at 1920x1080 go to
build/screenshots/desk-*.png. Prints ONE JSON line with what each step saw.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
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
from tests.browser_signin_scenario import SCREENSHOTS, add_account
from tests.wsclient import Client

SUPERVISOR = ("sup-1", "赵强")
SITE = ("op-z", "孙磊")
OTHER = ("op-y", "钱敏")
LATE = ("op-x", "吴刚")
CAMERA = ("op-w", "周洁")
# The picker's people: an operator with a console account (P0101), an officer of a court below
# the supervisor's (P0102), a site already in, and an operator of a court outside (P02).
PICKED = ("op-v", "王建刚")
FIELD = ("of-s", "王建军")
JOINED = ("op-u", "王建国")
FAR = ("op-t", "王建华")
PICK_QUERY = "王建"
# The desk's picture must advance by this much (s) once it shows the spotlit site.
PLAYING_S = 1.0
HOSTED = "片区执行调度会"
WITNESS_NAME = "李代表"
SIGNAL_S = 10.0
# A provincial conference's sites, for the desk's rows.
MANY = 300
BATCH = 25
LONG_TASKS = """() => {
  window.__longTasks = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__longTasks.push(e.duration);
  }).observe({ type: "longtask" });
}"""


async def shoot(page: Page, name: str) -> None:
    await page.set_viewport_size(DESKTOP)
    await page.evaluate(SETTLED)
    await page.screenshot(path=str(SCREENSHOTS / f"desk-{name}-1920x1080.png"))


async def run(workdir: Path) -> dict[str, Any]:
    if not CONSOLE_BUILD.exists():
        return {"error": f"{CONSOLE_BUILD} is missing: run `make console`"}
    add_account(workdir, SUPERVISOR[0], "supervisor", "--name", SUPERVISOR[1], "--court", "P01")
    add_account(workdir, PICKED[0], "operator", "--name", PICKED[1])
    # The many sites' joins are not paced here: the desk is under test, not the media.
    # and 300 sites besides the moderator and the others fit.
    server = ServerProcess(
        workdir,
        {
            "COMMANDCENTER_CONFERENCES_JOINS_PER_S": "1000",
            "COMMANDCENTER_CONFERENCES_MAX_SITES": "400",
        },
    )
    return await drive_with_server(server, drive)


async def _line(
    http: aiohttp.ClientSession,
    base: str,
    who: tuple[str, str],
    role: Role = Role.OPERATOR,
    court: str = "P0101",
) -> Client:
    user, name = who
    query = f"token={token(user, role, court, name)}&v=1"
    ws_base = base.replace("http://", "ws://")
    client = Client(await http.ws_connect(f"{ws_base}/ws?{query}"), "json", user)
    client.welcome = await client.expect("welcome", SIGNAL_S)
    return client


async def drive(browser: Browser, base: str, seen: dict[str, Any]) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    sup = await sign_in(browser, base, CONSOLE_PATH, SUPERVISOR[0], viewport=DESKTOP)
    errors: list[str] = []
    sup.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    seen["page_errors"] = errors
    await until(lambda: connected(sup), within=15, what="the supervisor's console connected")
    desk = sup.get_by_role("region", name="会商主持")
    unfold = desk.get_by_role("button", name="展开")
    await unfold.wait_for(timeout=10_000)
    seen["folded"] = [
        await desk.get_by_label("会商主题").is_visible(),
        await unfold.get_attribute("aria-expanded"),
    ]
    await unfold.click()
    seen["fold_stored"] = await sup.evaluate("localStorage.getItem('cc.desk.folded')")
    await desk.get_by_label("会商主题").fill(HOSTED)
    await desk.get_by_role("button", name="发起会商（本院及下级法院）").click()
    await desk.get_by_role("heading", name=HOSTED).wait_for(timeout=10_000)
    cid = (await console_state(sup))["moderating"]["id"]
    # No cap on connections: each site's WebSocket holds one (aiohttp's default cap is 100).
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        site = await _line(http, base, SITE)
        other = await _line(http, base, OTHER)
        for client in (site, other):
            await client.request("join_conference", reply="conference_joined", conference_id=cid)
        await site.request("raise_hand", conference_id=cid)
        row = desk.get_by_role("listitem", name=SITE[1])
        await row.get_by_text("举手第 1 位").wait_for(timeout=10_000)

        # Spotlight: every site is told whose video it sees.
        await row.get_by_role("button", name="设为焦点").click()
        told = await other.expect(
            "conference_update", SIGNAL_S, where=lambda m: "spotlight" in m["changes"]
        )
        seen["spotlight_told"] = (told["changes"]["spotlight"] or {}).get("id")
        await desk.get_by_text(f"焦点画面：{SITE[1]}").wait_for(timeout=10_000)
        seen["spotlight_desk"] = (await console_state(sup))["moderating"]["spotlight"]

        # Lock: a site not yet in is refused; unlock again.
        await desk.get_by_role("button", name="锁定会商").click()
        locked = await other.expect(
            "conference_update", SIGNAL_S, where=lambda m: m["changes"].get("locked") is True
        )
        seen["locked_told"] = locked["changes"]["locked"]
        await desk.get_by_text("已锁定：不再接受新的参会方").wait_for(timeout=10_000)
        late = await _line(http, base, LATE)
        refused = await late.error_for(await late.send("join_conference", conference_id=cid))
        seen["late_refused"] = [refused["code"], refused.get("reason")]
        await shoot(sup, "locked")
        await desk.get_by_role("button", name="解除锁定").click()
        await desk.get_by_role("button", name="锁定会商").wait_for(timeout=10_000)
        seen["unlocked"] = (await console_state(sup))["moderating"]["locked"]

        # A co-moderator, then a site removed after the question.
        await (
            desk.get_by_role("listitem", name=OTHER[1])
            .get_by_role("button", name="设为主持人")
            .click()
        )
        await desk.get_by_text(f"主持人：{SUPERVISOR[1]}、{OTHER[1]}").wait_for(timeout=10_000)
        seen["moderators"] = (await console_state(sup))["moderating"]["moderators"]
        await (
            desk.get_by_role("listitem", name=OTHER[1])
            .get_by_role("button", name="取消主持人")
            .click()
        )
        await desk.get_by_text(f"主持人：{SUPERVISOR[1]}", exact=True).wait_for(timeout=10_000)
        await (
            desk.get_by_role("listitem", name=OTHER[1])
            .get_by_role("button", name="设为主持人")
            .wait_for(timeout=10_000)
        )
        seen["moderators_after"] = (await console_state(sup))["moderating"]["moderators"]
        await row.get_by_role("button", name="移出").click()
        await row.get_by_text(f"将 {SITE[1]} 移出会商？").wait_for(timeout=10_000)
        await row.get_by_role("button", name="确定").click()
        left = await site.expect("conference_left", SIGNAL_S)
        seen["removed"] = [left["reason"], left["by"]]
        await row.wait_for(state="detached", timeout=10_000)

        # 邀请参会: a signed-in user is picked by part of the name and clicked, then the
        # invitation is withdrawn.
        invitations = desk.get_by_role("region", name="邀请参会")
        await invitations.get_by_role("combobox", name="查找人员").fill(LATE[1][:1])
        await invitations.get_by_role("option").filter(has_text=LATE[1]).click(timeout=10_000)
        rung = await late.expect("conference_invitation", SIGNAL_S)
        seen["invited"] = rung["conference"]["conference_id"] == cid
        # Named as the console knows the user (its operators), else by id.
        invited = invitations.get_by_role("listitem", name=re.compile(f"^({LATE[0]}|{LATE[1]})$"))
        await invited.get_by_text("呼叫中").wait_for(timeout=10_000)
        await invited.get_by_role("button", name="撤回邀请").click()
        stopped = await late.expect("invitation_stopped", SIGNAL_S)
        seen["withdrawn"] = [stopped["reason"], stopped["by"]["id"]]
        await invited.get_by_text("已撤回").wait_for(timeout=10_000)
        await picker(browser, base, cid, http, desk, sup, seen)

        # 邀请列席: a link with its QR code; the witness watches, then is revoked.
        panel = desk.get_by_role("region", name="邀请列席")
        await panel.get_by_label("姓名").fill(WITNESS_NAME)
        await panel.get_by_role("button", name="生成邀请链接").click()
        qr = panel.get_by_role("img", name="列席链接二维码")
        await qr.wait_for(timeout=10_000)
        await until(lambda: _has_src(qr), within=SIGNAL_S, what="the QR code drawn")
        seen["qr"] = ((await qr.get_attribute("src")) or "")[:22]
        link = await panel.get_by_label("列席链接").input_value()
        seen["link"] = link.split("#")[0].removeprefix(base)
        item = panel.get_by_role("listitem", name=WITNESS_NAME)
        seen["listed"] = (await item.inner_text()).split()[0]
        await shoot(sup, "witness-invited")
        context = await browser.new_context()
        witness = await context.new_page()
        witness.on("pageerror", lambda e: errors.append(f"witness pageerror: {e}"))
        await witness.goto(link, timeout=10_000)
        join = witness.get_by_role("listitem").filter(has_text=f"「{HOSTED}」")
        await join.get_by_role("button", name="加入", exact=True).click(timeout=SIGNAL_S * 1000)
        seen["witness_role"] = await until(
            lambda: _witness_role(witness), within=SIGNAL_S, what="the witness joined"
        )
        await (
            desk.get_by_role("listitem", name=WITNESS_NAME)
            .filter(has_text="列席")
            .first.wait_for(timeout=10_000)
        )
        await shoot(sup, "witness-watching")
        await item.get_by_role("button", name="撤销").click()
        seen["witness_closed"] = await until(
            lambda: _closed(witness), within=5, what="the witness's page closed"
        )
        await item.get_by_text("已撤销").wait_for(timeout=10_000)
        seen["revoked_listed"] = (await console_state(sup))["moderating"]["witnesses"]
        await shoot(sup, "witness-revoked")
        await context.close()
        await desk_video(browser, base, cid, desk, sup, seen)
        await many_sites(http, base, cid, sup, seen)
        for client in (site, other, late):
            await client.close()


async def picker(
    browser: Browser,
    base: str,
    cid: str,
    http: aiohttp.ClientSession,
    desk: Any,
    sup: Page,
    seen: dict[str, Any],
) -> None:
    """The moderator types part of a Chinese name; the picker lists whom they may invite (not
    a site already in, nor a user of a court outside theirs); the arrows and Enter ring the
    operator picked, whose console shows the invitation until they decline it."""
    invitee = await sign_in(browser, base, CONSOLE_PATH, PICKED[0], viewport=DESKTOP)
    errors: list[str] = seen["page_errors"]
    invitee.on("pageerror", lambda e: errors.append(f"invitee pageerror: {e}"))
    await until(lambda: connected(invitee), within=15, what="the invitee's console connected")
    joined = await _line(http, base, JOINED)
    await joined.request("join_conference", reply="conference_joined", conference_id=cid)
    far = await _line(http, base, FAR, Role.OPERATOR, "P02")
    field = await _line(http, base, FIELD, Role.OFFICER, "P0102")
    await desk.get_by_role("listitem", name=JOINED[1]).wait_for(timeout=10_000)
    invitations = desk.get_by_role("region", name="邀请参会")
    search = invitations.get_by_role("combobox", name="查找人员")
    options = invitations.get_by_role("listbox", name="可邀请的人员").get_by_role("option")
    await search.fill(PICK_QUERY)
    await until(
        lambda: _listing(options, {PICKED[1], FIELD[1]}),
        within=SIGNAL_S,
        what="the picker listing the operator and the officer",
    )
    seen["picker_rows"] = [
        " ".join((await options.nth(i).inner_text()).split()) for i in range(await options.count())
    ]
    await fits_on_a_phone(sup, search, seen)
    await search.focus()
    names = [row.split()[0] for row in seen["picker_rows"]]
    for _ in range(names.index(PICKED[1]) + 1):
        await search.press("ArrowDown")
    active = await search.get_attribute("aria-activedescendant")
    seen["picker_active"] = (
        " ".join((await sup.locator(f"#{active}").inner_text()).split()) if active else None
    )
    await search.press("Enter")
    alert = invitee.get_by_role("alert", name="会商邀请")
    await alert.wait_for(timeout=10_000)
    seen["picker_rung"] = [
        " ".join((await alert.inner_text()).split()),
        (await console_state(invitee)).get("conferencesRinging"),
    ]
    invited = invitations.get_by_role("list", name="邀请参会").get_by_role(
        "listitem", name=PICKED[1]
    )
    await invited.get_by_text("呼叫中").wait_for(timeout=10_000)
    # Rung already: not offered again.
    await search.fill(PICK_QUERY)
    await until(
        lambda: _listing(options, {FIELD[1]}), within=SIGNAL_S, what="the picker without them"
    )
    seen["picker_after"] = await options.all_inner_texts()
    await search.fill("")
    await alert.get_by_role("button", name="拒绝").click()
    await alert.wait_for(state="detached", timeout=10_000)
    await invited.get_by_text("已拒绝").wait_for(timeout=10_000)
    seen["picker_declined"] = True
    await invitee.context.close()
    # A site's id typed: not offered, as typed or otherwise; the picker says why.
    await search.fill(JOINED[0])
    hint = invitations.get_by_role("status").filter(has_text="没有可邀请的人员")
    await hint.wait_for(timeout=10_000)
    seen["picker_by_id_of_a_site"] = [await options.count(), await hint.inner_text()]
    await search.fill("")
    # Out again: the desk's rows are counted later.
    await joined.request("leave_conference", conference_id=cid)
    await desk.get_by_role("listitem", name=JOINED[1]).wait_for(state="detached", timeout=10_000)
    for client in (joined, far, field):
        await client.close()


async def _listing(options: Any, names: set[str]) -> list[str] | None:
    """The picker's rows' names once they are exactly `names`."""
    texts: list[str] = await options.all_inner_texts()
    shown = [t.split()[0] for t in texts if t.split()]
    return shown if set(shown) == names and len(shown) == len(names) else None


# The picker's boxes at 390 px: what of the field, the list and its rows leaves the screen
# sideways, or has text cut off inside its box.
PICKER_FITS = """(section) => {
  const W = document.documentElement.clientWidth;
  const out = [];
  const boxes = '.inv-picker input, .inv-picker-list, .inv-option, .inv-option span';
  for (const el of section.querySelectorAll(boxes)) {
    const r = el.getBoundingClientRect();
    if (r.width === 0) continue;
    const what = el.className || el.tagName;
    if (r.left < -1 || r.right > W + 1)
      out.push(what + ' ' + Math.round(r.left) + '..' + Math.round(r.right));
    if (el.scrollWidth > el.clientWidth + 1)
      out.push(what + ' cut ' + el.scrollWidth + '>' + el.clientWidth);
  }
  return out;
}"""


def section_list(page: Page) -> Any:
    return page.get_by_role("listbox", name="可邀请的人员").get_by_role("option").last


async def fits_on_a_phone(page: Page, search: Any, seen: dict[str, Any]) -> None:
    """The picker with its rows at 390x844, photographed, and measured for what sticks out."""
    await page.set_viewport_size(PHONE)
    await page.evaluate(SETTLED)
    # The list's last row in sight, with the field above it.
    await section_list(page).scroll_into_view_if_needed()
    await page.evaluate(SETTLED)
    section = page.get_by_role("region", name="邀请参会")
    seen["picker_phone"] = await section.evaluate(PICKER_FITS)
    seen["picker_phone_width"] = await section.evaluate("s => s.getBoundingClientRect().width")
    await page.screenshot(path=str(SCREENSHOTS / "desk-picker-390x844.png"))
    await page.set_viewport_size(DESKTOP)
    await page.evaluate(SETTLED)


async def desk_video(
    browser: Browser, base: str, cid: str, desk: Any, sup: Page, seen: dict[str, Any]
) -> None:
    """A site with a (fake) camera joins from the conferences page and is spotlit from the
    desk: the desk's video shows its picture (frames with a size, playing on)."""
    context = await browser.new_context()
    page = await context.new_page()
    user, name = CAMERA
    await page.goto(
        f"{base}/app/conference.html#token={token(user, Role.OPERATOR, 'P0101', name)}",
        timeout=10_000,
    )
    await until(
        lambda: page.evaluate("window.conf && window.conf.state().connected || null"),
        within=SIGNAL_S,
        what="the camera site signed in",
    )
    await page.evaluate("id => window.conf.join(id)", cid)
    row = desk.get_by_role("listitem", name=name)
    await row.get_by_role("button", name="设为焦点").click(timeout=SIGNAL_S * 1000)
    await desk.get_by_text(f"焦点画面：{name}").wait_for(timeout=10_000)
    video = desk.get_by_label("会商画面", exact=True)
    first = await until(
        lambda: _playing(video, 0.0), within=20, what="the desk's video showing the spotlit site"
    )
    seen["desk_media"] = await sup.evaluate("window.ccConsole.deskMedia()")
    later = await until(
        lambda: _playing(video, first[1] + PLAYING_S), within=10, what="the desk's video playing"
    )
    seen["desk_video"] = [later[0], round(later[1] - first[1], 2)]
    seen["desk_video_caption"] = await desk.locator(".mod-video figcaption").inner_text()
    await shoot(sup, "video")
    # Given the floor, its (fake) microphone is heard on the desk: an <audio> playing a live
    # track with audio arriving, and the desk's 静音 mutes it (and 取消静音 undoes that).
    await row.get_by_role("button", name="给予发言").click(timeout=SIGNAL_S * 1000)
    heard = await until(lambda: _hearing(sup, 0), within=20, what="the desk hearing the site")
    more = await until(
        lambda: _hearing(sup, heard["inbound"]["bytes"]), within=10, what="more of its voice"
    )
    await desk.get_by_role("button", name="静音", exact=True).click()
    muted = await until(
        lambda: _voices_muted(sup, True), within=SIGNAL_S, what="the desk's voices muted"
    )
    await desk.get_by_role("button", name="取消静音", exact=True).click()
    unmuted = await until(
        lambda: _voices_muted(sup, False), within=SIGNAL_S, what="the desk's voices heard again"
    )
    seen["desk_audio"] = {
        "voices": heard["voices"],
        "bytes": [heard["inbound"]["bytes"], more["inbound"]["bytes"]],
        "muted": [muted["muted"], [v["muted"] for v in muted["voices"]]],
        "unmuted": [unmuted["muted"], [v["muted"] for v in unmuted["voices"]]],
    }
    await page.evaluate("window.conf.leave()")
    await row.wait_for(state="detached", timeout=10_000)
    await context.close()


async def _hearing(page: Page, after_bytes: int) -> dict[str, Any] | None:
    """The desk's voices once audio past `after_bytes` arrived and one <audio> plays a live,
    unmuted track."""
    state: dict[str, Any] | None = await page.evaluate("window.ccConsole.deskAudio()")
    if state is None or state["inbound"]["bytes"] <= after_bytes:
        return None
    live = [
        v
        for v in state["voices"]
        if v["track"] == "live" and v["trackMuted"] is False and not v["paused"]
    ]
    return state if live else None


async def _voices_muted(page: Page, muted: bool) -> dict[str, Any] | None:
    state: dict[str, Any] | None = await page.evaluate("window.ccConsole.deskAudio()")
    if state is None or not state["voices"] or state["muted"] is not muted:
        return None
    return state if all(v["muted"] is muted for v in state["voices"]) else None


async def _playing(video: Any, after_s: float) -> tuple[int, float] | None:
    """The video's width and currentTime once it has a picture past `after_s` seconds."""
    width, at = await video.evaluate("v => [v.videoWidth, v.currentTime]")
    return (int(width), float(at)) if width > 0 and at > after_s else None


async def many_sites(
    http: aiohttp.ClientSession, base: str, cid: str, sup: Page, seen: dict[str, Any]
) -> None:
    """MANY sites join and then all raise their hands at once: the desk shows every row with
    its place, and what the page's main thread spent in long tasks meanwhile is measured."""
    clients: list[Client] = []
    # In batches: a few handshakes at a time, as consoles signing in over a morning would.
    for start in range(0, MANY, BATCH):
        batch = await asyncio.wait_for(
            asyncio.gather(
                *(
                    _line(http, base, (f"sv-m{i:03d}", f"席位{i:03d}"), Role.SUPERVISOR, "P01")
                    for i in range(start, min(MANY, start + BATCH))
                )
            ),
            SIGNAL_S * 3,
        )
        clients.extend(batch)
        await asyncio.wait_for(
            asyncio.gather(
                *(
                    c.request("join_conference", reply="conference_joined", conference_id=cid)
                    for c in batch
                )
            ),
            SIGNAL_S * 3,
        )
    await until(lambda: _rows(sup, lambda s: len(s) > MANY), within=30, what="every site's row")
    await sup.evaluate(LONG_TASKS)
    started = time.monotonic()
    await asyncio.wait_for(
        asyncio.gather(*(c.request("raise_hand", conference_id=cid) for c in clients)),
        SIGNAL_S * 3,
    )
    await until(
        lambda: _rows(sup, lambda s: sum(1 for _, f in s if f == "queued") == MANY),
        within=30,
        what="every hand on the desk",
    )
    desk = sup.get_by_role("region", name="会商主持")
    last = desk.get_by_role("listitem", name=f"席位{MANY - 1:03d}")
    await last.get_by_text(f"举手第 {MANY} 位").wait_for(timeout=10_000)
    seen["many_shown_s"] = round(time.monotonic() - started, 2)
    tasks: list[float] = await sup.evaluate("window.__longTasks")
    seen["many_rows"] = await desk.locator("li.mod-site").count()
    seen["many_long_tasks"] = [len(tasks), round(max(tasks, default=0.0)), round(sum(tasks))]
    await shoot(sup, "many-sites")
    await asyncio.gather(*(c.close() for c in clients))


async def _rows(page: Page, holds: Any) -> bool | None:
    moderating = (await console_state(page)).get("moderating") or {}
    sites = moderating.get("sites") or []
    return True if holds(sites) else None


async def _has_src(img: Any) -> bool | None:
    src = await img.get_attribute("src")
    return True if src and src.startswith("data:image/png") else None


async def _witness_role(page: Page) -> str | None:
    state = await page.evaluate("window.conf ? window.conf.state() : {}")
    conference = state.get("conference") or {}
    role: str | None = conference.get("role")
    return role


async def _closed(page: Page) -> int | None:
    state = await page.evaluate("window.conf ? window.conf.state() : {}")
    code = state.get("closeCode")
    return int(code) if code and not state.get("connected") else None


def main() -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory(prefix="cc-desk-") as tmp:
        result = asyncio.run(run(Path(tmp)))
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
