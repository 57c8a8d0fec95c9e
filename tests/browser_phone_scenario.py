"""The officer's phone page in headless Chromium at 390x844, run inside a network namespace
by tests/test_browser_phone.py:

    unshare -n -- python -m tests.browser_phone_scenario

An officer account is added with the real CLI; an operator's page of the web client (a token
link) answers. The officer signs in on the phone page (sent to the sign-in page and back),
reports a position, taps the call button and sees the call ring at the center, cancels one
call, has the next answered (video reaches the operator), mutes, hangs up; a short press of
SOS sends nothing, holding it raises an emergency that rings at the operator, and the
operator's clearing it shows on the phone. Screenshots go to build/screenshots/phone-*.png.
Prints ONE JSON line with what each step saw.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import FilePayload, Page

from commandcenter.auth import Role
from tests.browser import ServerProcess, drive_with_server, open_page, until
from tests.browser import token as browser_token
from tests.browser_signin_scenario import PASSWORD, SCREENSHOTS, add_account

OFFICER, OPERATOR, COURT = "o-1", "op-1", "P0101"
PHONE = {"width": 390, "height": 844}
WHERE = {"latitude": 23.1291, "longitude": 113.2644}


async def state(page: Page) -> dict[str, Any]:
    """The client's state, or {} while the page is between two documents."""
    try:
        found: dict[str, Any] = await page.evaluate("window.cc ? window.cc.state() : {}")
    except PlaywrightError:
        return {}
    return found


async def line(page: Page) -> str:
    try:
        return (await page.locator("#call-state").text_content() or "").strip()
    except PlaywrightError:
        return ""


async def shot(page: Page, name: str) -> None:
    await page.screenshot(path=str(SCREENSHOTS / f"phone-{name}.png"))


async def run(workdir: Path) -> dict[str, Any]:
    add_account(workdir, OFFICER, "officer")
    return await drive_with_server(ServerProcess(workdir), drive)


async def drive(browser: Any, base: str, seen: dict[str, Any]) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    operator = await open_page(browser, base, user=OPERATOR, role=Role.OPERATOR, court=COURT)
    context = await browser.new_context(
        viewport=PHONE,
        geolocation=WHERE,
        # Camera granted too: without it Chromium offers no usable host candidate.
        permissions=["geolocation", "camera", "microphone"],
        has_touch=True,
    )
    phone = await context.new_page()
    console: list[str] = []
    phone.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    seen["console"] = console
    await phone.goto(f"{base}/app/phone.html", timeout=10_000)
    await until(
        lambda: _on(phone, "/app/signin.html"), within=10, what="phone sent to sign in first"
    )
    await phone.fill("#user", OFFICER)
    await phone.fill("#password", PASSWORD)
    await phone.click("#submit")

    async def connected() -> bool:
        s = await state(phone)
        return bool(s.get("connected")) and (s.get("user") or {}).get("id") == OFFICER

    await until(connected, within=10, what="phone connected")
    seen["phone_url"] = phone.url.removeprefix(base)
    # The header names the officer's court by its name (welcome.court_name), not its code.
    seen["who"] = await phone.locator("#who").text_content()

    async def located() -> dict[str, Any] | None:
        for entry in (await operator.state())["roster"]:
            if entry["officer"]["id"] == OFFICER and entry["position"]:
                found: dict[str, Any] = entry["position"]
                return found
        return None

    # The phone reports where it is as soon as it is signed in; the console sees it.
    position = await until(located, within=10, what="the phone's position at the operator")
    seen["position_at_operator"] = [position["lat"], position["lon"]]
    seen["idle_line"] = await line(phone)
    await shot(phone, "idle")

    # A short press of SOS sends nothing.
    await phone.hover("#sos")
    await phone.mouse.down()
    await asyncio.sleep(0.5)
    await phone.mouse.up()
    await asyncio.sleep(0.5)
    seen["short_press_emergency"] = (await state(phone))["emergency"]
    seen["short_press_rang"] = (await operator.state())["ringing"]

    # Call, see it ring at the center, cancel.
    await phone.click("#call")
    seen["ringing_line"] = await until(
        lambda: _line_is(phone, "指挥中心响铃中…"), within=10, what="phone told it rings"
    )
    await until(lambda: _rings(operator, 1), within=10, what="operator rung")
    await shot(phone, "ringing")
    await phone.click("#cancel")
    seen["cancelled_line"] = await until(
        lambda: _line_is(phone, "通话已结束（已取消）"), within=10, what="cancelled"
    )
    await until(lambda: _rings(operator, 0), within=10, what="operator stops ringing")

    # Call again; the operator answers; video reaches the operator.
    await phone.click("#call")
    call_id = (await until(lambda: _ringing(operator), within=10, what="rung again"))[0]
    await operator.page.evaluate(f"window.cc.accept({json.dumps(call_id)})")
    seen["active_line"] = await until(
        lambda: _line_starts(phone, "通话中"), within=15, what="phone in the call"
    )

    async def officer_video() -> bool:
        stats = await operator.inbound()
        return any(
            s["stream"] == OFFICER and s["kind"] == "video" and (s.get("framesDecoded") or 0) > 0
            for s in stats
        )

    try:
        await until(officer_video, within=20, what="operator decodes the phone's video")
    except AssertionError:
        seen["phone_state"] = {k: v for k, v in (await state(phone)).items() if k != "events"}
        seen["operator_inbound"] = await operator.inbound()
        raise
    seen["operator_decodes_phone"] = True
    await phone.click("#mute")
    tracks = (await state(phone))["localTracks"]
    seen["muted_tracks"] = sorted((t["kind"], t["enabled"]) for t in tracks)
    await shot(phone, "in-call")
    await phone.click("#hangup")
    seen["ended_line"] = await until(
        lambda: _line_is(phone, "通话已结束（挂断）"), within=10, what="hung up"
    )

    # Hold SOS: the emergency rings; the operator clears it; the phone says who did.
    await phone.hover("#sos")
    await phone.mouse.down()
    await asyncio.sleep(2.4)
    await phone.mouse.up()
    await until(lambda: _flag(phone, True), within=10, what="emergency raised")
    await until(lambda: _rings(operator, 1), within=10, what="emergency rings")
    seen["sos_state"] = await phone.locator("#sos-state").text_content()
    # The button itself no longer asks to be held: it says the alarm is out.
    seen["sos_label"] = await until(
        lambda: _label_is(phone, "已发出紧急求助"), within=10, what="the button says it is out"
    )
    # Once the SOS is out, the phone offers a note; sent, it reaches the operator's page.
    await phone.get_by_label("补充说明（可选）").fill("嫌疑人持械，两人受伤")
    await phone.get_by_role("button", name="发送说明").click()

    async def noted() -> str | None:
        for event in (await operator.state())["events"]:
            if event.get("type") == "emergency_noted":
                found: str = event["note"]
                return found
        return None

    seen["note_at_operator"] = await until(noted, within=10, what="the note at the operator")
    seen["note_sent"] = await phone.locator("#sos-note-sent").text_content()
    await shot(phone, "sos")
    await operator.page.evaluate(f"window.cc.acknowledgeEmergency({json.dumps(OFFICER)})")

    async def taken() -> str | None:
        text = await phone.locator("#sos-state").text_content()
        return text if text and "已接警" in text else None

    seen["taken_state"] = await until(taken, within=10, what="the phone told who took it")
    seen["taken_label"] = await phone.locator("#sos-label").text_content()
    await operator.page.evaluate(f"window.cc.clearEmergency({json.dumps(OFFICER)})")
    await until(lambda: _flag(phone, False), within=10, what="emergency cleared")
    seen["cleared_state"] = await phone.locator("#sos-state").text_content()
    seen["cleared_label"] = await until(
        lambda: _label_is(phone, "长按 2 秒紧急求助"), within=10, what="the button asks again"
    )
    seen["note_form_after_clear"] = await phone.locator("#sos-note-form").is_visible()
    await shot(phone, "cleared")
    await capture_evidence(phone, context, base, seen)
    seen["manifest"] = await phone.evaluate(
        "fetch('/app/phone.webmanifest').then(r => r.json()).then(m => m.start_url)"
    )
    await context.close()
    await operator.close()


CASE = "(2025)粤0101执12号"


def jpeg(name: str, data: bytes) -> FilePayload:
    return {"name": name, "mimeType": "image/jpeg", "buffer": data}


async def uploads(page: Page) -> list[dict[str, str]]:
    try:
        found: list[dict[str, str]] = await page.eval_on_selector_all(
            "#uploads li", "els => els.map(e => ({...e.dataset}))"
        )
    except PlaywrightError:
        return []
    return found


async def capture_evidence(phone: Page, context: Any, base: str, seen: dict[str, Any]) -> None:
    """A photo taken with no case number is refused on the page; with one it is hashed,
    uploaded and kept by the server; one taken offline waits and goes when the network is
    back."""
    photo = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 64
    await phone.fill("#case", "")
    await phone.set_input_files("#photo-input", files=[jpeg("a.jpg", photo)])
    seen["no_case_message"] = await phone.locator("#evidence-message").text_content()
    await phone.fill("#case", CASE)
    await phone.set_input_files("#photo-input", files=[jpeg("scene.jpg", photo)])

    async def done(n: int) -> list[dict[str, str]] | None:
        items = [i for i in await uploads(phone) if i.get("state") == "done"]
        return items if len(items) >= n else None

    try:
        (item,) = await until(lambda: done(1), within=20, what="photo uploaded")
    except AssertionError:
        seen["uploads_seen"] = await uploads(phone)
        seen["upload_text"] = await phone.locator("#uploads").inner_text()
        raise
    seen["photo_hash_matches"] = item["sha256"] == hashlib.sha256(photo).hexdigest()
    token = browser_token(OPERATOR, Role.OPERATOR, COURT, "operator")
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{base}/api/evidence/{item['evidenceId']}",
            headers={"Authorization": f"Bearer {token}"},
        ) as resp,
    ):
        stored = await resp.json()
    seen["stored"] = [resp.status, stored.get("sha256") == hashlib.sha256(photo).hexdigest(),
                      stored.get("case_number"), stored.get("kind")]  # fmt: skip
    await shot(phone, "evidence")
    # Offline: queued on the phone, sent when the network returns.
    await context.set_offline(True)
    second = photo + b"second"
    await phone.set_input_files("#photo-input", files=[jpeg("b.jpg", second)])

    async def waiting() -> bool:
        return any(i.get("state") == "queued" for i in await uploads(phone))

    await until(waiting, within=10, what="queued while offline")
    seen["offline_state"] = "queued"
    await context.set_offline(False)
    items = await until(lambda: done(2), within=30, what="sent once back online")
    seen["after_online"] = sorted(i["sha256"] == hashlib.sha256(second).hexdigest() for i in items)


async def _on(page: Page, path: str) -> bool:
    try:
        return path in page.url and await page.locator("#signin").count() == 1
    except PlaywrightError:
        return False


async def _line_is(page: Page, text: str) -> str | None:
    found = await line(page)
    return found if found == text else None


async def _line_starts(page: Page, text: str) -> str | None:
    found = await line(page)
    return found if found.startswith(text) else None


async def _rings(page: Any, n: int) -> bool:
    return len((await page.state())["ringing"]) == n


async def _ringing(page: Any) -> list[str] | None:
    ringing: list[str] = (await page.state())["ringing"]
    return ringing or None


async def _label_is(page: Page, text: str) -> str | None:
    label = await page.locator("#sos-label").text_content()
    return label if label == text else None


async def _flag(page: Page, raised: bool) -> bool:
    return (await state(page)).get("emergency") is raised


def main() -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory(prefix="cc-phone-") as tmp:
        result = asyncio.run(run(Path(tmp)))
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
