"""The call flow at the console in headless Chromium, run inside a network namespace by
tests/test_browser_callflow.py:

    unshare -n -- python -m tests.browser_callflow_scenario

Two operators and an officer are added with the real CLI and sign in through the sign-in page:
operators A and B on two consoles, the officer on the phone page. The officer calls; A
answers, pushes it into a conference a moderator runs, and offers the call to B, whom A's
console lists as free; B's console shows the offer and B accepts it: the call is B's, the
phone stays in it, and A is free; the push ends with A (the moderator is told why, A's console
stops pushing, B is told it had been pushed). A then says they are
away: B's console shows it, and the officer's next call rings at B and not at A. B answers
it and sends it back to the queue: the phone waits again until A, back, answers it. A
supervisor then joins that call silently (A is not told; the supervisor only listens), leaves,
and joins openly (A's call lists them; they talk back). Screenshots
of both consoles at 1920x1080 and 390x844 go to build/screenshots/callflow-*.png. Prints ONE
JSON line with what each step saw.
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
from tests.browser_console_scenario import (
    CONSOLE_BUILD,
    CONSOLE_PATH,
    DESKTOP,
    PHONE,
    SETTLED,
    connected,
    console_state,
)
from tests.browser_phone_scenario import _line_starts
from tests.browser_phone_scenario import state as phone_state
from tests.browser_signin_scenario import PASSWORD, SCREENSHOTS, add_account
from tests.wsclient import Client

OP_A, OP_B, OFFICER = ("op-a", "王芳"), ("op-b", "陈杰"), ("o-1", "张伟")
SUPERVISOR = ("sup-1", "赵强")
MODERATOR = ("mod-1", "周强")
TITLE = "年终执行调度会商"
SIGNAL_S = 10.0


async def shoot(page: Page, name: str) -> None:
    await page.set_viewport_size(DESKTOP)
    await page.evaluate(SETTLED)
    await page.screenshot(path=str(SCREENSHOTS / f"callflow-{name}-1920x1080.png"))
    await page.set_viewport_size(PHONE)
    await page.evaluate(SETTLED)
    await page.screenshot(path=str(SCREENSHOTS / f"callflow-{name}-390x844.png"), full_page=True)
    await page.set_viewport_size(DESKTOP)
    await page.evaluate(SETTLED)


async def sign_in(browser: Browser, base: str, path: str, user: str, **context: Any) -> Page:
    page = await (await browser.new_context(**context)).new_page()
    await page.goto(f"{base}{path}", timeout=10_000)
    await page.wait_for_url("**/app/signin.html**", timeout=10_000)
    await page.fill("#user", user)
    await page.fill("#password", PASSWORD)
    await page.click("#submit")
    return page


async def run(workdir: Path) -> dict[str, Any]:
    if not CONSOLE_BUILD.exists():
        return {"error": f"{CONSOLE_BUILD} is missing: run `make console`"}
    for (user, name), role in ((OP_A, "operator"), (OP_B, "operator"), (OFFICER, "officer")):
        add_account(workdir, user, role, "--name", name)
    add_account(workdir, SUPERVISOR[0], "supervisor", "--name", SUPERVISOR[1], "--court", "P01")
    # Supervisors may join either way here, so that the console offers both.
    server = ServerProcess(
        workdir,
        {
            "COMMANDCENTER_CALLS_SUPERVISOR_JOIN": "either",
            # An unacknowledged SOS alarms again soon, so that the run sees it.
            "COMMANDCENTER_EMERGENCY_REPEAT_AFTER_S": "2",
        },
    )
    return await drive_with_server(server, drive)


async def drive(browser: Browser, base: str, seen: dict[str, Any]) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    a = await sign_in(browser, base, CONSOLE_PATH, OP_A[0], viewport=DESKTOP)
    b = await sign_in(browser, base, CONSOLE_PATH, OP_B[0], viewport=DESKTOP)
    errors: list[str] = []
    for page in (a, b):
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
    await until(lambda: connected(a), within=15, what="console A connected")
    await until(lambda: connected(b), within=15, what="console B connected")
    await until(lambda: _phone_connected(phone), within=15, what="phone connected")

    # A's console lists B as a free operator of the court.
    operators_a = a.get_by_role("region", name="值班员")
    await operators_a.get_by_text(OP_B[1]).wait_for(timeout=10_000)
    seen["a_sees_b"] = await _operator_status(a, OP_B[0])

    # The officer calls; A answers.
    await phone.click("#call")
    ringing = a.get_by_label(f"正在呼入 {OFFICER[1]}")
    await ringing.wait_for(timeout=10_000)
    await ringing.get_by_role("button", name="接听").click()
    await until(lambda: _operator_of_call(a, OP_A[0]), within=10, what="A in the call")
    seen["b_sees_a_busy"] = await until(
        lambda: _status_is(b, OP_A[0], "busy"), within=10, what="B sees A busy"
    )

    # A pushes the call into a conference a moderator (a bare protocol client) runs.
    http = aiohttp.ClientSession()
    mod = await moderator_line(http, base)
    created = await mod.request(
        "create_conference", reply="conference_created", title=TITLE, invite_courts=["P0101"]
    )
    conference_id = created["conference"]["conference_id"]
    await mod.request("join_conference", reply="conference_joined", conference_id=conference_id)
    await a.get_by_role("button", name="推送到会商").click()
    await a.get_by_label("选择会商").select_option(label=TITLE)
    await a.get_by_role("button", name="推送", exact=True).click()
    await mod.expect("conference_update", SIGNAL_S, where=lambda m: bool(m["changes"].get("feeds")))

    # A offers the call to B, picked from the free operators.
    await a.get_by_label("转接给").select_option(label=OP_B[1])
    await a.get_by_role("button", name="转接", exact=True).click()
    waiting = a.locator(".transfer-waiting")
    await waiting.wait_for(timeout=10_000)
    seen["a_waiting_text"] = await waiting.inner_text()
    offer = b.locator(".transfer-offer")
    await offer.wait_for(timeout=10_000)
    seen["b_offer_text"] = await offer.locator(".who").inner_text()
    seen["a_still_operator"] = (await console_state(a))["call"]["operator"]["id"]
    await shoot(a, "offering")
    await shoot(b, "offered")

    # B accepts: the call is B's, A is free, the phone stays in the call.
    await offer.get_by_role("button", name="接受转接").click()
    await until(lambda: _operator_of_call(b, OP_B[0]), within=10, what="B has the call")
    await until(lambda: _no_call(a), within=10, what="A out of the call")
    seen["a_status_after"] = (await console_state(a))["myStatus"]
    seen["phone_line_after"] = await until(
        lambda: _line_starts(phone, "通话中"), within=10, what="the phone still in the call"
    )
    # The push was A's word: it ended with the transfer. The moderator is told why, A's
    # console stops showing it (and leaves the conference), B is told it had been pushed.
    ended = await mod.expect("feed_ended", SIGNAL_S)
    seen["feed_ended"] = [ended["reason"], ended["by"]["id"], (ended["to"] or {}).get("id")]
    cleared = await mod.expect(
        "conference_update", SIGNAL_S, where=lambda m: m["changes"].get("feeds") == []
    )
    seen["feeds_after_transfer"] = cleared["changes"]["feeds"]
    seen["a_shared_after_transfer"] = await until(
        lambda: _shared_cleared(a), within=10, what="A no longer pushing"
    )
    seen["a_notice"] = await until(
        lambda: _notice(a, "通话已转接"), within=10, what="A told the push ended"
    )
    seen["b_notice"] = await until(
        lambda: _notice(b, "此通话原由"), within=10, what="B told the call had been pushed"
    )
    await mod.close()
    await http.close()
    await shoot(b, "transferred")

    # A says it is away; B sees it; B hangs up, and the next call rings at B and not at A.
    await a.get_by_role("button", name="设为暂离").click()
    await until(lambda: _my_status(a, "away"), within=10, what="A away")
    seen["a_header_button"] = await a.get_by_role("button", name="恢复空闲").inner_text()
    seen["b_sees_a_away"] = await until(
        lambda: _status_is(b, OP_A[0], "away"), within=10, what="B sees A away"
    )
    listed = b.get_by_role("region", name="值班员").get_by_role("listitem")
    seen["b_lists_a"] = await listed.filter(has_text=OP_A[1]).inner_text()
    await b.get_by_role("button", name="挂断").click()
    await until(lambda: _no_call(b), within=10, what="B hung up")
    await until(lambda: _phone_idle(phone), within=10, what="the phone's call ended")
    await phone.click("#call")
    await until(lambda: _ringing_count(b, 1), within=10, what="the next call rings at B")
    # A stays silent for a while (no timed assertion: a window in which it must not ring).
    await asyncio.sleep(1.0)
    seen["a_ringing_while_away"] = (await console_state(a))["ringing"]
    await shoot(a, "away")
    await shoot(b, "ringing-b")

    # B answers, then sends the call back to the queue: nobody else is free (A is away), so
    # the phone waits in the queue; A comes back and is rung, answers, and the phone is in
    # the call again.
    ringing_b = b.get_by_label(f"正在呼入 {OFFICER[1]}")
    await ringing_b.get_by_role("button", name="接听").click()
    await until(lambda: _operator_of_call(b, OP_B[0]), within=10, what="B in the call")
    await b.get_by_role("button", name="转回队列").click()
    await until(lambda: _no_call(b), within=10, what="B out of the call")
    seen["phone_line_requeued"] = await until(
        lambda: _line_starts(phone, "排队等候"), within=10, what="the phone queued again"
    )
    await a.get_by_role("button", name="恢复空闲").click()
    ringing_a = a.get_by_label(f"正在呼入 {OFFICER[1]}")
    await ringing_a.wait_for(timeout=10_000)
    seen["b_ringing_after_send_back"] = (await console_state(b))["ringing"]
    await ringing_a.get_by_role("button", name="接听").click()
    await until(lambda: _operator_of_call(a, OP_A[0]), within=10, what="A answers it")
    seen["phone_line_reanswered"] = await until(
        lambda: _line_starts(phone, "通话中"), within=10, what="the phone in the call again"
    )
    # The officer's media never stopped: it reaches A, who answered the call sent back.
    seen["reanswered_media_from"] = await until(
        lambda: _media_from(a, OFFICER[0]), within=20, what="the officer's media at A"
    )
    await shoot(a, "reanswered")

    # A supervisor picks the officer in the roster: the card offers both joins. A silent join
    # is not shown to A and only listens; an open one is listed and talks back.
    sup = await sign_in(browser, base, CONSOLE_PATH, SUPERVISOR[0], viewport=DESKTOP)
    await until(lambda: connected(sup), within=15, what="the supervisor's console connected")
    roster = sup.get_by_role("region", name="在线干警")
    await roster.get_by_role("button", name=OFFICER[1]).click()
    card = sup.get_by_role("complementary")
    await card.get_by_role("button", name="静默监看").wait_for(timeout=10_000)
    seen["card_offers_visible_join"] = await card.get_by_role("button", name="监看通话").count()
    await card.get_by_role("button", name="静默监看").click()
    await until(lambda: _in_call(sup), within=10, what="the supervisor joined silently")
    seen["silent_talk_label"] = await until(
        lambda: _talk_label(sup), within=10, what="the supervisor's talk label"
    )
    seen["a_lists_silent"] = (await console_state(a))["call"]["supervisors"]
    await shoot(sup, "supervisor-silent")
    await sup.get_by_role("button", name="挂断").click()
    await until(lambda: _no_call(sup), within=10, what="the supervisor left")
    await card.get_by_role("button", name="监看通话").click()
    await until(lambda: _in_call(sup), within=10, what="the supervisor joined openly")
    seen["a_lists_visible"] = await until(
        lambda: _supervisors_of_call(a), within=10, what="A told of the supervisor"
    )
    seen["visible_talk_label"] = await until(
        lambda: _talk_label(sup, "对讲中"), within=10, what="the supervisor talks back"
    )

    # A hangs up; the officer holds SOS; nobody takes it on: B's console alarms again and
    # says so.
    await a.get_by_role("button", name="挂断").click()
    await until(lambda: _phone_idle(phone), within=10, what="the phone's call ended")
    await phone.hover("#sos")
    await phone.mouse.down()
    await asyncio.sleep(2.4)
    await phone.mouse.up()
    await b.get_by_role("alertdialog").wait_for(timeout=10_000)
    seen["repeat_notice"] = await until(
        lambda: _notice(b, "第 1 次提醒"), within=15, what="the SOS alarms again at B"
    )
    await shoot(b, "sos-repeated")


async def _phone_connected(phone: Page) -> bool:
    s = await phone_state(phone)
    return bool(s.get("connected")) and (s.get("user") or {}).get("id") == OFFICER[0]


async def _phone_idle(phone: Page) -> bool:
    s = await phone_state(phone)
    return bool(s) and not s.get("call") and not s.get("outgoing")


async def _operator_of_call(page: Page, user: str) -> bool:
    call = (await console_state(page)).get("call")
    operator = (call or {}).get("operator") or {}
    return bool(call and call["state"] == "active" and operator.get("id") == user)


async def _media_from(page: Page, user: str) -> list[str] | None:
    media = (await console_state(page)).get("media") or {}
    remote: list[str] = media.get("remote") or []
    return remote if user in remote else None


async def _talk_label(page: Page, wanted: str | None = None) -> str | None:
    """The call view's talk label once drawn (and, if given, once it reads `wanted`)."""
    text = (await page.locator(".call-bar .talk").inner_text()).strip()
    return text if text and (wanted is None or text == wanted) else None


async def _notice(page: Page, start: str) -> str | None:
    for text in await page.locator(".notices li").all_inner_texts():
        if text.startswith(start):
            return text
    return None


async def _in_call(page: Page) -> bool:
    call = (await console_state(page)).get("call")
    return bool(call and call["state"] == "active")


async def _supervisors_of_call(page: Page) -> list[str] | None:
    call = (await console_state(page)).get("call") or {}
    names = [s["name"] for s in call.get("supervisors", [])]
    return names or None


async def _no_call(page: Page) -> bool:
    return (await console_state(page)).get("call") is None


async def _my_status(page: Page, status: str) -> bool:
    return (await console_state(page)).get("myStatus") == status


async def _ringing_count(page: Page, n: int) -> bool:
    return len((await console_state(page)).get("ringing", [])) == n


async def moderator_line(http: aiohttp.ClientSession, base: str) -> Client:
    user, name = MODERATOR
    query = f"token={token(user, Role.SUPERVISOR, 'P01', name)}&v=1"
    client = Client(
        await http.ws_connect(f"{base.replace('http://', 'ws://')}/ws?{query}"), "json", user
    )
    client.welcome = await client.expect("welcome", SIGNAL_S)
    return client


async def _shared_cleared(page: Page) -> bool:
    return (await console_state(page)).get("sharedTo", "missing") is None


async def _operator_status(page: Page, user: str) -> str | None:
    for entry in (await console_state(page)).get("operators", []):
        if entry["user"]["id"] == user:
            return str(entry["status"])
    return None


async def _status_is(page: Page, user: str, status: str) -> str | None:
    found = await _operator_status(page, user)
    return found if found == status else None


def main() -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory(prefix="cc-callflow-") as tmp:
        result = asyncio.run(run(Path(tmp)))
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
