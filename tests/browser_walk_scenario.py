"""A walk through the product as its users would take it, run inside a network namespace by
tests/test_browser_walk.py:

    unshare -n -- python -m tests.browser_walk_scenario

Accounts for an operator, a supervisor, an admin and an officer are added with the real CLI
and each signs in with a password. The console is walked at 1366x768 (the command center's
common laptop) and 1920x1080: roster and map, a waiting call, the call, the emergency alarm,
the video wall, the records' tabs; the admin page; the officer's phone page at 390x844:
idle, ringing, in a call, SOS. Every state is photographed into build/screenshots/walk/
and probed: what sticks out of the viewport, visible text that is a raw wire code, and on
the phone the touch targets smaller than 44 px. Prints ONE JSON line with what it saw.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Locator, Page, ViewportSize

from tests.browser import REPO, SECRET, ServerProcess, drive_with_server, until

COURT = "P0101"
PASSWORD = "a password long enough"
ACCOUNTS = {
    "op-1": ("王芳", "operator"),
    "s-1": ("赵强", "supervisor"),
    "ad-1": ("孙敏", "admin"),
    "o-1": ("张伟", "officer"),
}
SCREENSHOTS = REPO / "build" / "screenshots" / "walk"
LAPTOP: ViewportSize = {"width": 1366, "height": 768}
DESKTOP: ViewportSize = {"width": 1920, "height": 1080}
PHONE: ViewportSize = {"width": 390, "height": 844}
WHERE = {"latitude": 32.0603, "longitude": 118.7969}

# What a page shows that an operator would stumble on, measured in the page:
#  - overflow: visible elements (panels, buttons, inputs) whose box leaves the viewport
#    sideways, or a page wider than the viewport (a horizontal scroll bar);
#  - codes: visible text that is a raw wire code (snake_case, e.g. "not_found");
#  - small: visible buttons and links smaller than 44 x 44 px (checked on the phone).
PROBE = """() => {
  const W = document.documentElement.clientWidth;
  const shown = (el) => {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) return null;
    const s = getComputedStyle(el);
    if (s.visibility === 'hidden' || s.display === 'none') return null;
    return r;
  };
  const name = (el) => el.tagName.toLowerCase() + (el.className && typeof el.className === 'string'
    ? '.' + el.className.trim().split(/\\s+/).join('.') : '') +
    (el.textContent ? ' "' + el.textContent.trim().slice(0, 30) + '"' : '');
  const overflow = [];
  if (document.documentElement.scrollWidth > W + 1)
    overflow.push('page ' + document.documentElement.scrollWidth + ' > ' + W);
  for (const el of document.querySelectorAll(
      'main, section, aside, header, nav, dialog, [role=alertdialog], button, input, select, a')) {
    if (el.closest('.leaflet-container')) continue;
    const r = shown(el);
    if (r && (r.right > W + 1 || r.left < -1)) {
      // Inside a box that scrolls sideways it is reachable, not cut off.
      let p = el.parentElement, scrolls = false;
      while (p && p !== document.body) {
        const o = getComputedStyle(p).overflowX;
        if ((o === 'auto' || o === 'scroll') && p.getBoundingClientRect().right <= W + 1) {
          scrolls = true; break;
        }
        p = p.parentElement;
      }
      if (!scrolls) overflow.push(name(el) + ' ' + Math.round(r.left) + '..' + Math.round(r.right));
    }
  }
  const codes = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const text = n.textContent || '';
    // snake_case wire codes, and timestamps as the wire writes them.
    const m = text.match(/\\b[a-z]+(?:_[a-z]+)+\\b|\\d{4}-\\d\\d-\\d\\dT\\d\\d:/);
    if (!m || !n.parentElement || !shown(n.parentElement)) continue;
    if (n.parentElement.closest('code, pre, .mono, script, style')) continue;
    codes.push(m[0] + ' in "' + text.trim().slice(0, 60) + '"');
  }
  const small = [];
  for (const el of document.querySelectorAll('button, a[href], input[type=checkbox], select')) {
    const r = shown(el);
    if (r && (r.height < 44 || r.width < 44)) small.push(name(el) + ' ' +
      Math.round(r.width) + 'x' + Math.round(r.height));
  }
  // The roster's officers that can be read whole (the first rows: the table scrolls).
  let rosterRows = null, rosterHeight = null;
  const scroll = document.querySelector('section.roster .table-scroll');
  if (scroll && shown(scroll)) {
    const box = scroll.getBoundingClientRect();
    const bottom = Math.min(box.bottom, window.innerHeight);
    rosterHeight = Math.round(bottom - box.top);
    rosterRows = [...scroll.querySelectorAll('tr[data-officer]')]
      .filter((tr) => tr.getBoundingClientRect().bottom <= bottom + 1).length;
  }
  return {overflow, codes, small, rosterRows, rosterHeight};
}"""

SETTLED = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"


def add_accounts(workdir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMANDCENTER_")}
    env |= {
        "COMMANDCENTER_SERVER_DATA_DIR": str(workdir / "var"),
        "COMMANDCENTER_RECORDER_SQLITE_PATH": str(workdir / "trace.sqlite3"),
        "COMMANDCENTER_AUTH_JWT_SECRET": SECRET,
    }
    for user, (name, role) in ACCOUNTS.items():
        subprocess.run(
            [sys.executable, "-m", "commandcenter", "user", "add", "--user", user, "--name", name,
             "--role", role, "--court", COURT, "--password-stdin"],
            input=PASSWORD + "\n", capture_output=True, text=True, env=env, cwd=workdir,
            timeout=60, check=True,
        )  # fmt: skip


async def sign_in(browser: Browser, base: str, user: str, path: str, **context: Any) -> Page:
    ctx = await browser.new_context(**context)
    page = await ctx.new_page()
    await page.goto(f"{base}/app/signin.html?next={path}", timeout=10_000)
    await page.fill("#user", user)
    await page.fill("#password", PASSWORD)
    await page.click("#submit")
    await until(lambda: arrived(page, path), within=15, what=f"{user} signed in to {path}")
    return page


async def arrived(page: Page, path: str) -> bool:
    return page.url.split("?")[0].split("#")[0].endswith(path)


async def look(page: Page, seen: dict[str, Any], name: str, sizes: list[ViewportSize]) -> None:
    """Photograph and probe `page` at each size; the probes go to seen["looks"][name@size]."""
    looks: dict[str, Any] = seen.setdefault("looks", {})
    for size in sizes:
        await page.set_viewport_size(size)
        await page.evaluate(SETTLED)
        # For the photograph's pixels only (map tiles and video frames painting after the
        # resize); the probes below read the layout, which SETTLED has waited for.
        await asyncio.sleep(0.2)
        label = f"{size['width']}x{size['height']}"
        await page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"))
        looks[f"{name}@{label}"] = await page.evaluate(PROBE)


async def shows(element: Locator, marker: str) -> bool:
    """Whether `element` is shown with some text, holding `marker`."""
    if not await element.count() or not await element.is_visible():
        return False
    text = await element.inner_text()
    return bool(text.strip()) and marker in text


async def console_state(page: Page) -> dict[str, Any]:
    found: dict[str, Any] = await page.evaluate("window.ccConsole ? window.ccConsole.state() : {}")
    return found


async def connected(page: Page) -> bool:
    return (await console_state(page)).get("connection") == "connected"


async def phone_line(page: Page, prefix: str) -> str | None:
    text = await page.locator("#call-state").text_content() or ""
    text = text.strip()
    return text if text and text.startswith(prefix) else None


async def drive(browser: Browser, base: str, seen: dict[str, Any]) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    desk = [LAPTOP, DESKTOP]
    phone = await sign_in(
        browser, base, "o-1", "/app/phone.html", viewport=PHONE, geolocation=WHERE,
        permissions=["geolocation", "camera", "microphone"], has_touch=True,
    )  # fmt: skip
    await until(lambda: phone_line(phone, ""), within=10, what="the phone's status line")
    await look(phone, seen, "phone-idle", [PHONE])

    console = await sign_in(browser, base, "op-1", "/app/console/index.html", viewport=LAPTOP)
    await until(lambda: connected(console), within=15, what="the console connected")
    await console.get_by_role("button", name=ACCOUNTS["o-1"][0], exact=True).wait_for(
        timeout=10_000
    )
    await look(console, seen, "console-roster", desk)

    await phone.click("#call")
    await until(lambda: phone_line(phone, "指挥中心响铃中"), within=10, what="phone rings out")
    await look(phone, seen, "phone-ringing", [PHONE])
    ringing = console.get_by_label(f"正在呼入 {ACCOUNTS['o-1'][0]}")
    await ringing.wait_for(timeout=10_000)
    await look(console, seen, "console-queue", desk)
    await ringing.get_by_role("button", name="接听").click()
    await until(lambda: phone_line(phone, "通话中"), within=15, what="phone in the call")
    # The console's picture of the officer is playing before it is photographed.
    await console.wait_for_function(
        "() => [...document.querySelectorAll('video')].some(v => v.videoWidth > 0 && !v.paused)",
        timeout=15_000,
    )
    await look(console, seen, "console-call", desk)
    await look(phone, seen, "phone-call", [PHONE])
    await console.get_by_role("button", name="挂断").click()
    await until(lambda: phone_line(phone, "通话已结束"), within=10, what="call over")

    await phone.evaluate("window.cc.emergency('walk: SOS')")
    alarm = console.get_by_role("alertdialog")
    await alarm.wait_for(timeout=10_000)
    await look(console, seen, "console-sos", desk)
    await look(phone, seen, "phone-sos", [PHONE])
    await alarm.get_by_role("button", name="接听紧急呼叫").click()
    await alarm.wait_for(state="hidden", timeout=10_000)
    await console.get_by_role("button", name="挂断").click()
    await until(lambda: phone_line(phone, "通话已结束"), within=10, what="SOS call over")
    console.once("dialog", lambda d: asyncio.ensure_future(d.accept("误触")))
    await console.locator(".sos-strip").get_by_role("button", name="误报").click()
    await console.locator(".sos-strip").wait_for(state="hidden", timeout=10_000)

    await console.close()
    supervisor = await sign_in(browser, base, "s-1", "/app/console/index.html", viewport=LAPTOP)
    await until(lambda: connected(supervisor), within=15, what="the supervisor's console")
    await supervisor.locator(".wall-toggle").click()
    await look(supervisor, seen, "console-wall", desk)
    await supervisor.locator(".wall-toggle").click()
    # What each records tab shows once it has what it loads (the statistics ask the server).
    loaded = {"evidence": "", "calls": "", "conferences": "", "stats": "范围："}
    for index, (tab, marker) in enumerate(loaded.items()):
        await supervisor.locator(".rec-nav button").nth(index).click()
        view = supervisor.locator(".rec-view:visible").first
        await until(partial(shows, view, marker), within=10, what=f"the {tab} records view")
        await look(supervisor, seen, f"console-records-{tab}", desk)
        seen[f"records_{tab}_text"] = await view.inner_text()

    admin = await sign_in(browser, base, "ad-1", "/app/console/admin.html", viewport=LAPTOP)
    await until(
        lambda: shows(admin.locator(".admin-count"), ""), within=10, what="the accounts counted"
    )
    await look(admin, seen, "admin", desk)
    seen["walked"] = True


async def main_async() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cc-walk-") as tmp:
        workdir = Path(tmp)
        add_accounts(workdir)
        return await drive_with_server(ServerProcess(workdir), drive)


def main() -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    result = asyncio.run(main_async())
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
