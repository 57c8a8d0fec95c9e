"""Hundreds of officers on the console's map, in headless Chromium against the real server,
run inside a network namespace by tests/test_browser_map.py:

    unshare -n -- python -m tests.browser_map_scenario

300 officers sign in as bare WebSocket clients (no media) and report positions in three
groups of 100, each group within a few hundred metres; the operator's console opens after
them (its roster reply brings every position at once); one officer is in a call (a second
operator's bare client answered it) and five have lost their signal. The map draws clusters
with counts instead of 300 overlapping pins, each bubble saying how many of its officers are
in a call or have lost their signal; three more lose theirs while the console is open and
their bubbles say so. One officer in the middle of a group raises an SOS: their
marker leaves the cluster and stands on the map on its own as the map jumps to it, while the
officers around it stay clustered. Ten officers' positions are older than
`console.position_stale_s`: their bubble says how many (旧位), one of them reports afresh and
the bubble counts one fewer, and another, selected in the roster and so alone on the map, is
grey with 旧位. The roster marks them the same way (the age grey, 旧位 beside it), and a
position reported just short of stale turns stale in the roster as time passes, with no
message.
Screenshots at 1920x1080 go to build/screenshots/map-*.png. Prints ONE JSON line with what
each step saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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
    SETTLED,
    connected,
    console_state,
)
from tests.browser_signin_scenario import SCREENSHOTS, add_account
from tests.wsclient import Client

OPERATOR = ("op-a", "王芳")
# A second operator's bare client answers one officer's call before the console opens.
OTHER_OPERATOR = "op-b"
IN_CALL = "o-1-000"
# Officers whose connection drops (signal lost, within the grace): before the console opens,
# and while it is open.
LOST_BEFORE = tuple(f"o-2-{n:03d}" for n in range(5))
LOST_AFTER = tuple(f"o-1-{n:03d}" for n in range(10, 13))
# Three places a few kilometres apart in Nanjing; each group's officers within ±0.002°.
GROUPS = ((32.0603, 118.7969), (32.0200, 118.7300), (32.1000, 118.8500))
PER_GROUP = 100
OFFICERS = len(GROUPS) * PER_GROUP
SOS = "o-0-050"
SIGNAL_S = 10.0
# Positions this old when reported are stale (console.position_stale_s, below them).
STALE_S = 300
STALE_AGE_S = 600
STALE = tuple(f"o-2-{n:03d}" for n in range(50, 60))
# One of them reports afresh while the console is open; another is selected.
REFRESHED, SELECTED = STALE[0], STALE[1]
# Reports a position this much short of stale at the end: its roster row turns stale later.
AGING, AGING_MARGIN_S = "o-1-050", 12


def officer_id(group: int, n: int) -> str:
    return f"o-{group}-{n:03d}"


def where(group: int, n: int) -> tuple[float, float]:
    """A spot of the group's, spread on a 10x10 grid (deterministic, so runs compare)."""
    lat, lon = GROUPS[group]
    return lat + (n // 10 - 4.5) * 0.0004, lon + (n % 10 - 4.5) * 0.0004


async def run(workdir: Path) -> dict[str, Any]:
    if not CONSOLE_BUILD.exists():
        return {"error": f"{CONSOLE_BUILD} is missing: run `make console`"}
    add_account(workdir, OPERATOR[0], "operator", "--name", OPERATOR[1])
    # A grace long enough that the dropped officers stay "signal lost" for the whole run.
    server = ServerProcess(
        workdir,
        {
            "COMMANDCENTER_PRESENCE_GRACE_S": "300",
            "COMMANDCENTER_CONSOLE_POSITION_STALE_S": str(STALE_S),
        },
    )
    return await drive_with_server(server, drive)


async def drive(browser: Browser, base: str, seen: dict[str, Any]) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # No cap on connections (aiohttp's default of 100 would hold the 101st officer back).
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        ws_base = base.replace("http://", "ws://")
        started = time.monotonic()
        clients = {}
        for group in range(len(GROUPS)):
            for n in range(PER_GROUP):
                user = officer_id(group, n)
                clients[user] = await _officer(http, ws_base, user)
        for user, client in clients.items():
            group, n = int(user[2]), int(user[4:])
            lat, lon = where(group, n)
            age_s = STALE_AGE_S if user in STALE else 0
            await client.request(
                "position",
                lat=lat,
                lon=lon,
                accuracy_m=10.0,
                device_time=(time.time() - age_s) * 1000,
            )
        seen["officers_connected_s"] = round(time.monotonic() - started, 2)
        # One officer in a call, five with their signal lost, before the console opens.
        other = await _line(http, ws_base, OTHER_OPERATOR, Role.OPERATOR)
        placed = await clients[IN_CALL].request("call_center", reply="call_placed")
        await other.request("accept", call_id=placed["call_id"])
        for user in LOST_BEFORE:
            await clients.pop(user).close()

        op = await sign_in(browser, base, CONSOLE_PATH, OPERATOR[0], viewport=DESKTOP)
        errors: list[str] = []
        op.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
        seen["page_errors"] = errors
        await until(lambda: connected(op), within=15, what="the console connected")
        drawn = await until(lambda: _drawn(op, OFFICERS), within=20, what="every officer drawn")
        seen["drawn"] = drawn
        seen["before"] = await until(lambda: _clusters(op), within=10, what="clusters drawn")
        # The bubbles on the page settle after the clustering (markercluster animates a
        # re-cluster, old and new bubbles both on the page for a moment).
        bubbles: list[int] = []

        async def settled() -> bool:
            bubbles.append(await op.locator(".marker-cluster").count())
            return bubbles[-1] == len(seen["before"]["clusters"])

        with contextlib.suppress(AssertionError):
            await until(settled, within=5, what="the bubbles settled")
        seen["cluster_bubbles"] = bubbles[-1]
        seen["bubbles_before"] = await until(
            lambda: _bubbles_count(
                op, {"in_call": 1, "away": len(LOST_BEFORE), "stale": len(STALE)}
            ),
            within=10,
            what="the bubbles counting the officer in a call and those with signal lost",
        )
        await _shoot(op, "clusters")
        # Three more lose their signal while the console is open: their bubbles say so.
        for user in LOST_AFTER:
            await clients.pop(user).close()
        seen["bubbles_after_drop"] = await until(
            lambda: _bubbles_count(
                op,
                {
                    "in_call": 1,
                    "away": len(LOST_BEFORE) + len(LOST_AFTER),
                    "stale": len(STALE),
                },
            ),
            within=SIGNAL_S,
            what="the bubbles counting the officers who just lost their signal",
        )
        await _shoot(op, "clusters-busy")
        # One stale officer reports where they are now: their bubble counts one fewer.
        group, n = int(REFRESHED[2]), int(REFRESHED[4:])
        lat, lon = where(group, n)
        await clients[REFRESHED].request(
            "position", lat=lat, lon=lon, accuracy_m=10.0, device_time=time.time() * 1000
        )
        seen["bubbles_after_refresh"] = await until(
            lambda: _bubbles_count(
                op,
                {
                    "in_call": 1,
                    "away": len(LOST_BEFORE) + len(LOST_AFTER),
                    "stale": len(STALE) - 1,
                },
            ),
            within=SIGNAL_S,
            what="the bubble counting one stale position fewer",
        )
        # The roster says the same: the stale officers' ages grey with 旧位, the refreshed one not.
        seen["roster_stale"] = await until(
            lambda: _row_age(op, SELECTED, stale=True), within=SIGNAL_S, what="a stale roster row"
        )
        seen["roster_refreshed"] = await until(
            lambda: _row_age(op, REFRESHED, stale=False),
            within=SIGNAL_S,
            what="the refreshed roster row",
        )
        # Another, selected in the roster, stands alone on the map: grey, 旧位 by the name.
        await op.get_by_role("button", name=f"干警{SELECTED[2:]}", exact=True).click()
        await until(lambda: _alone(op, SELECTED), within=SIGNAL_S, what="the selection alone")
        stale_pin = op.locator(f'.officer-pin.is-stale[data-officer="{SELECTED}"]')
        await stale_pin.wait_for(state="visible", timeout=10_000)
        seen["selected_pin_badge"] = await stale_pin.locator(".officer-stale").inner_text()
        await _shoot(op, "stale")
        await op.get_by_role("button", name="关闭").click()
        await until(lambda: _not_alone(op, SELECTED), within=SIGNAL_S, what="the selection back in")

        # An SOS from the middle of the first group: out of its cluster, on its own.
        await clients[SOS].request("emergency", reply="call_placed")
        seen["after"] = await until(
            lambda: _alone(op, SOS), within=SIGNAL_S, what="the emergency on its own"
        )
        pin = op.locator(f'.officer-pin.is-emergency[data-officer="{SOS}"]')
        seen["emergency_pin_visible"] = await pin.is_visible()
        await op.get_by_role("button", name="确认收到").click()
        await op.get_by_role("alertdialog").wait_for(state="hidden", timeout=10_000)
        seen["pin_after_acknowledged"] = await pin.is_visible()
        await _shoot(op, "emergency")
        # A position just short of stale: fresh in the roster, then stale as it ages, with no
        # message about it since.
        group, n = int(AGING[2]), int(AGING[4:])
        lat, lon = where(group, n)
        device_time = time.time() - (STALE_S - AGING_MARGIN_S)
        await clients[AGING].request(
            "position", lat=lat, lon=lon, accuracy_m=10.0, device_time=device_time * 1000
        )
        seen["aging_fresh"] = await until(
            lambda: _row_age(op, AGING, stale=False, older_than_s=STALE_S - AGING_MARGIN_S),
            within=AGING_MARGIN_S / 2,
            what="the aging officer's row fresh",
        )
        seen["aging_stale"] = await until(
            lambda: _row_age(op, AGING, stale=True),
            within=AGING_MARGIN_S + SIGNAL_S,
            what="the aging officer's row stale",
        )
        seen["aging_stale_after_s"] = round(time.time() - device_time - STALE_S, 1)
        await _shoot(op, "roster-stale")
        for client in clients.values():
            await client.close()
        await other.close()


async def _officer(http: aiohttp.ClientSession, ws_base: str, user: str) -> Client:
    return await _line(http, ws_base, user, Role.OFFICER)


async def _line(http: aiohttp.ClientSession, ws_base: str, user: str, role: Role) -> Client:
    query = f"token={token(user, role, 'P0101', f'干警{user[2:]}')}&v=1"
    client = Client(await http.ws_connect(f"{ws_base}/ws?{query}"), "json", user)
    client.welcome = await client.expect("welcome", SIGNAL_S)
    return client


async def _shoot(page: Page, name: str) -> None:
    await page.evaluate(SETTLED)
    await page.screenshot(path=str(SCREENSHOTS / f"map-{name}-1920x1080.png"))


async def _drawn(page: Page, n: int) -> int | None:
    drawn = len((await console_state(page)).get("mapOfficers") or [])
    return drawn if drawn == n else None


async def _clusters(page: Page) -> dict[str, Any] | None:
    found: dict[str, Any] = (await console_state(page)).get("mapClusters") or {}
    return found if found.get("clusters") else None


# Every bubble on the page as a person reads it: its label and its badges.
BUBBLES = """() => [...document.querySelectorAll(".marker-cluster .cluster-bubble")].map(b => ({
  label: b.getAttribute("aria-label"),
  badges: [...b.querySelectorAll(".cluster-badge")].map(s => ({
    kind: s.dataset.kind, count: Number(s.dataset.count), text: s.textContent,
  })),
}))"""


async def _bubbles_count(page: Page, wanted: dict[str, int]) -> list[dict[str, Any]] | None:
    """The bubbles once their badges add up to `wanted` (kind -> officers)."""
    bubbles: list[dict[str, Any]] = await page.evaluate(BUBBLES)
    totals: dict[str, int] = {}
    for bubble in bubbles:
        for badge in bubble["badges"]:
            totals[badge["kind"]] = totals.get(badge["kind"], 0) + badge["count"]
    return bubbles if totals == wanted else None


# An officer's roster row's position age as a person sees it.
ROW_AGE = """(id) => {
  const td = document.querySelector(`tr[data-officer="${id}"] td.age`);
  if (!td) return null;
  const age = td.querySelector(".position-age"), badge = td.querySelector(".officer-stale");
  return {
    age: age.textContent, grey: age.classList.contains("is-stale"),
    color: getComputedStyle(age).color,
    badge: badge.textContent, badge_shown: getComputedStyle(badge).display !== "none",
  };
}"""


async def _row_age(
    page: Page, officer: str, *, stale: bool, older_than_s: int = 0
) -> dict[str, Any] | None:
    """`officer`'s roster age once it is (or is not) marked stale; with `older_than_s`, once
    it says the position is at least that old (the new report has come)."""
    row: dict[str, Any] | None = await page.evaluate(ROW_AGE, officer)
    if row is None or row["grey"] != stale or row["badge_shown"] != stale:
        return None
    if older_than_s and not row["age"].startswith(f"{older_than_s // 60}分"):
        return None
    return row


async def _alone(page: Page, officer: str) -> dict[str, Any] | None:
    found = await _clusters(page)
    return found if found and officer in found["alone"] else None


async def _not_alone(page: Page, officer: str) -> bool:
    found = await _clusters(page)
    return found is not None and officer not in found["alone"]


def main() -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory(prefix="cc-map-") as tmp:
        result = asyncio.run(run(Path(tmp)))
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
