"""The conference page in headless Chromium against the real server, run inside a network
namespace by tests/test_browser_conference.py:

    unshare -n -- python -m tests.browser_conference_scenario create media floor ...

A supervisor of the provincial court P moderates; operators of three courts under it (P01,
P0101, P0102) are the sites A, B and C; a second operator of P0101 comes late. Every page is
commandcenter/static/conference.html, signed in with a real token, with Chromium's fake
camera and microphone. The pages are driven as a person would: fields by their labels,
buttons by their (Chinese) names, the moderator's buttons in the row of the site they act on.
What the page knows and its media counters (getStats) are read through `window.conf`.

The phases build on each other, in this order:

- create: the moderator hosts a concentrated enforcement action (集中执行行动, chosen in the
  form, with a talk time) for P01 and every court under it and joins it; the sites are rung
  and join from the invitation, all three at once: over the join pace (one a second here)
  the later ones' pages say they wait, with their place, until they are let in; the
  latecomer's ring stops (B answered for P0101);
- media: every page's peer connection is up; each site hears the moderator (an audio slot)
  and sees the chair in its spotlight; the moderator's grid shows A, B and C, labelled;
- floor: A raises its hand, the moderator sees it queued and grants it; B and C receive A's
  audio on the slot conference_media names, and A's video in the spotlight; A's page counts
  its time down; the moderator's table marks who is speaking (conference_speaking: the fake
  microphones beep), B's mark goes when B turns its microphone off (its page says so) and
  comes back when B turns it on;
- revoke: the moderator revokes; A is warned, and after the grace B and C receive no more
  of A's audio (the slot's packet counter stands still) although A still sends;
- mute_all: A is called on again and heard; the moderator opens the audio, then mutes all:
  A loses the floor at once and its audio stops reaching B and C;
- spotlight: the moderator spotlights C: the sites' spotlight slot carries C and keeps
  decoding frames;
- witness: a witness, with a token scoped to the conference, joins from the list: its page
  shows the spotlight (C) with frames decoding, the action's grid, and no button but leave;
- record: the moderator starts recording: every page, the witness's too, shows it; a second
  start is refused and said in Chinese; stopped, every page's indicator goes, and the
  recording is filed as the conference's evidence (audio and video); the witness leaves;
- conflict: a moderator action quoting an old revision is refused `conflict`; the page says
  so and refreshes to the current state;
- feeds: an officer of P0101 calls the center and an operator answers (bare protocol
  clients); the moderator's share form sends share_call: a call that does not exist is
  refused and said; the live call is listed on every page, its officer the spotlight; the
  moderator's stop button takes it back (after conflict, which wants C in the spotlight);
- lock: the moderator locks the conference; the latecomer's join is refused invalid_state;
- remove: the moderator removes B with a ban; B's page says so, and its join is refused
  forbidden (also once unlocked);
- chair: the moderator sets the floor's rules from its form (an open floor, two speakers, a
  talk time): A's raised hand is granted at once and A's page counts its time down; C is
  named co-moderator and its page turns into the moderator's view, grid included; the
  chair is handed over to C;
- end: the moderator ends the conference; every page says so and drops its media.

Prints ONE JSON line: what each phase measured, or the error that stopped it with the
pages' state and the tail of the server's log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Browser, BrowserContext, Locator, Page, async_playwright

from commandcenter.auth import Role
from media.settings import worker_count
from tests.browser import ServerProcess, launch, token, until
from tests.wsclient import Client

PHASES = (
    "create",
    "media",
    "floor",
    "revoke",
    "mute_all",
    "spotlight",
    "witness",
    "record",
    "conflict",
    "feeds",
    "lock",
    "remove",
    "chair",
    "end",
)
PAGE_PATH = "/app/conference.html"
MODERATOR, SITE_A, SITE_B, SITE_C, LATECOMER = "sv-p", "op-a", "op-b", "op-c", "op-d"
# A people's congress deputy, whose token names the conference (made once it exists).
WITNESS = "w-1"
WITNESS_USER = (WITNESS, Role.WITNESS, "P", "人大代表王委员")
# A live call to show: an officer of P0101 and the operator who answers, as bare clients.
OFFICER, CALL_OPERATOR = "o-1", "op-e"
CALLERS = (
    (OFFICER, Role.OFFICER, "P0101", "一基层法院执行干警"),
    (CALL_OPERATOR, Role.OPERATOR, "P0101", "一基层法院接警席"),
)
# (user, role, court, name): the names are what the pages show, and what the test looks for.
USERS = (
    (MODERATOR, Role.SUPERVISOR, "P", "省院指挥长"),
    (SITE_A, Role.OPERATOR, "P01", "一中院指挥中心"),
    (SITE_B, Role.OPERATOR, "P0101", "一基层法院指挥中心"),
    (SITE_C, Role.OPERATOR, "P0102", "二基层法院指挥中心"),
    (LATECOMER, Role.OPERATOR, "P0101", "一基层法院值班席"),
)
NAMES = {user: name for user, _, _, name in (*USERS, WITNESS_USER, *CALLERS)}
SITES = (SITE_A, SITE_B, SITE_C)
# The court each site answers for when it joins.
SITE_COURTS = {court: user for user, _, court, _ in USERS if user in SITES}
TITLE = "年终执行会商"
# Short, so that the revoke phase waits little; long enough to be seen on the page, and to
# tell "at once" (mute all: click to the page's new state) from "after the grace" on a machine
# under load, where that round trip through Chromium has measured 1.03 s.
REVOKE_GRACE_S = 2.5
# Slow, so that of the three sites joining at once the second and third are told to wait:
# one a second for the server's node, whose pace is the per-worker one times its media
# workers (as many as cores: the server runs with `workers = "auto"`).
JOINS_PER_S = 1.0 / worker_count("auto", len(os.sched_getaffinity(0)))
SERVER_ENV = {
    "COMMANDCENTER_CONFERENCES_REVOKE_GRACE_S": str(REVOKE_GRACE_S),
    "COMMANDCENTER_CONFERENCES_JOINS_PER_S": str(JOINS_PER_S),
    # The record phase records the conference (the trace is on disk: evidence is kept).
    "COMMANDCENTER_MEDIA_RECORD": "true",
}
SIGNAL_S = 10.0
MEDIA_S = 15.0
# A counter counts as stopped once it stays put this long (Opus sends 50 packets a second).
STILL_S = 1.0
# "Keeps coming": this many more packets (half a second of audio), or frames.
MORE_PACKETS = 25
MORE_FRAMES = 5
# The talk time the chair phase sets: long enough not to run out while it looks.
TALK_S = 30
# The talk time the create form sets: longer than the phases from floor to mute_all take.
FLOOR_TALK_S = 120
# The floor's countdown on A's page: the floor, then the seconds left.
COUNTDOWN = re.compile(r"^您有发言权，剩余(\d+)秒$")
SPEAKING_MARK = "正在讲话"


# ---- one page ----------------------------------------------------------------------------


@dataclasses.dataclass
class ConferencePage:
    """One user's conference page, with what its console said."""

    user: str
    context: BrowserContext
    page: Page
    console: list[str] = dataclasses.field(default_factory=list)

    @property
    def name(self) -> str:
        return NAMES[self.user]

    async def state(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.page.evaluate("window.conf.state()")
        return result

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.page.evaluate("window.conf.stats()")
        return result

    async def call(self, expression: str, arg: Any = None) -> Any:
        """A `window.conf` action, e.g. `c => window.conf.spotlight(c, {revision: 0})`."""
        return await self.page.evaluate(expression, arg)

    def button(self, name: str) -> Locator:
        return self.page.get_by_role("button", name=name, exact=True)

    def row_button(self, site: str, name: str) -> Locator:
        """The moderator's button `name` in the row of `site` in the sites table."""
        row = self.page.get_by_role("row").filter(has_text=NAMES[site])
        return row.get_by_role("button", name=name, exact=True)

    def item_button(self, text: str, name: str) -> Locator:
        """Button `name` of the list item (an invitation, a conference) showing `text`."""
        item = self.page.get_by_role("listitem").filter(has_text=text)
        return item.get_by_role("button", name=name, exact=True)

    async def shows(self, text: str) -> bool:
        return await self.page.get_by_text(text).first.is_visible()

    async def close(self) -> None:
        await self.context.close()


async def open_page(
    browser: Browser, base: str, user: str, role: Role, court: str, scope: str | None = None
) -> ConferencePage:
    context = await browser.new_context()
    page = await context.new_page()
    cp = ConferencePage(user, context, page)
    page.on("console", lambda m: cp.console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: cp.console.append(f"pageerror: {e}"))
    link = f"{base}{PAGE_PATH}#token={token(user, role, court, NAMES[user], scope)}"
    await page.goto(link, timeout=10_000)

    async def signed_in() -> bool:
        return bool((await cp.state())["connected"])

    await until(signed_in, within=SIGNAL_S, what=f"{user} signed in")
    return cp


# ---- waiting on pages --------------------------------------------------------------------


async def state_where(
    page: ConferencePage,
    holds: Callable[[dict[str, Any]], bool],
    what: str,
    within: float = SIGNAL_S,
) -> dict[str, Any]:
    """The page's state, once `holds` says yes."""

    async def probe() -> dict[str, Any] | None:
        state = await page.state()
        return state if holds(state) else None

    return await until(probe, within=within, what=f"{page.user}: {what}")


async def showing(page: ConferencePage, text: str, within: float = SIGNAL_S) -> bool:
    async def probe() -> bool:
        return await page.shows(text)

    return await until(probe, within=within, what=f"{page.user} shows {text!r}")


def conference(state: dict[str, Any]) -> dict[str, Any]:
    conf: dict[str, Any] | None = state["conference"]
    assert conf is not None, "not in a conference"
    return conf


def in_conference(state: dict[str, Any]) -> bool:
    return state["conference"] is not None


def floor_of(state: dict[str, Any]) -> str:
    return str(conference(state)["floor"]["state"]) if in_conference(state) else ""


def site_info(state: dict[str, Any], user: str) -> dict[str, Any] | None:
    if not in_conference(state):
        return None
    found = [s for s in conference(state)["sites"] if s["user"]["id"] == user]
    return found[0] if found else None


def audio_slot_of(state: dict[str, Any], user: str) -> str | None:
    """The audio slot conference_media says carries `user`, if any."""
    if not in_conference(state):
        return None
    audio = conference(state)["lineup"]["audio"]
    return f"audio-{audio.index(user)}" if user in audio else None


async def counter(page: ConferencePage, slot: str, field: str) -> int:
    stats = await page.stats()
    return int(stats["slots"].get(slot, {}).get(field) or 0)


async def outbound_audio(page: ConferencePage) -> int:
    stats = await page.stats()
    return int(stats["outbound"].get("audio", {}).get("packetsSent") or 0)


async def rising(
    page: ConferencePage, slot: str, field: str, by: int, within: float = MEDIA_S
) -> list[int]:
    """Wait until the slot's counter has grown by `by` from its value now, and by more than
    0 from nothing: [first, later]."""
    first = await counter(page, slot, field)

    async def grown() -> int | None:
        now = await counter(page, slot, field)
        return now if now >= first + by and now > 0 else None

    later = await until(grown, within=within, what=f"{page.user}: {field} of {slot} grows")
    return [first, later]


async def stands_still(
    page: ConferencePage, slot: str, field: str, within: float = MEDIA_S
) -> dict[str, Any]:
    """Wait until the slot's counter stays put for STILL_S; how long that took, and the
    counts seen."""
    started = time.monotonic()
    samples: list[tuple[float, int]] = []

    async def still() -> bool:
        now = time.monotonic()
        samples.append((now, await counter(page, slot, field)))
        window = [n for t, n in samples if t >= now - STILL_S]
        return samples[0][0] <= now - STILL_S and len(set(window)) == 1

    await until(still, within=within, what=f"{page.user}: {field} of {slot} stops", every=0.1)
    last = samples[-1][1]
    stopped_by = next(t for t, n in samples if n == last) - started
    return {
        "slot": slot,
        "first": samples[0][1],
        "last": last,
        "still_after_s": round(stopped_by, 3),
    }


# ---- the scenario ------------------------------------------------------------------------


def speaking(state: dict[str, Any]) -> list[str]:
    """Who the moderator's page was told is speaking (conference_speaking)."""
    return list(conference(state)["speaking"]) if in_conference(state) else []


async def visible_buttons(region: Locator) -> list[str]:
    return [
        await b.inner_text()
        for b in await region.get_by_role("button").all()
        if await b.is_visible()
    ]


class Scenario:
    def __init__(self, pages: dict[str, ConferencePage], browser: Browser, base: str) -> None:
        self.pages = pages
        self.browser = browser
        self.base = base
        self.conference_id = ""
        self.call_id = ""

    def __getitem__(self, user: str) -> ConferencePage:
        return self.pages[user]

    async def create(self) -> dict[str, Any]:
        mod = self[MODERATOR]
        form = mod.page.get_by_role("form", name="发起会商")
        await form.get_by_label("会商标题").fill(TITLE)
        await form.get_by_label("会商类型").select_option(label="集中执行行动")
        await form.get_by_label("邀请法院及其下级法院").fill("P01")
        await form.get_by_label("每次发言时限").fill(str(FLOOR_TALK_S))
        await mod.button("发起会商").click()
        state = await state_where(
            mod, lambda s: in_conference(s) and s["media"] is not None, "hosts and joins"
        )
        self.conference_id = conference(state)["id"]
        moderator_role = conference(state)["role"]
        kind = conference(state)["info"]["kind"]
        talk_s = conference(state)["state"]["max_talk_s"]

        # Rung: every console of the invited courts, the latecomer too.
        rung = []
        for user in (*SITES, LATECOMER):
            await state_where(self[user], lambda s: self.conference_id in s["ringing"], "rung")
            rung.append(user)
        invitation = f"{NAMES[MODERATOR]}邀请您参加「{TITLE}」"
        await showing(self[SITE_A], invitation)
        roles = {MODERATOR: moderator_role}
        # All three at once: over the join pace, those after the first are told to wait
        # (their place, on the page), then let in in turn.
        waited: dict[str, list[Any]] = {}

        async def joins(user: str) -> dict[str, Any]:
            page = self[user]

            async def probe() -> dict[str, Any] | None:
                state = await page.state()
                if state["waiting"] is not None and user not in waited:
                    waited[user] = [state["waiting"]["place"], (state["notice"] or {}).get("text")]
                return state if in_conference(state) else None

            return await until(probe, within=SIGNAL_S, what=f"{user}: joined from the invitation")

        # One after the other without waiting for the answers: still over the pace, and the
        # server hears them in SITES' order (the order the grid and the lists then show).
        for u in SITES:
            await self[u].item_button(invitation, "加入").click()
        for user, joined in zip(SITES, await asyncio.gather(*map(joins, SITES)), strict=True):
            roles[user] = conference(joined)["role"]

        def every_site_in(s: dict[str, Any]) -> bool:
            answered = {
                i["invitee"] for i in conference(s)["invitations"] if i["state"] == "joined"
            }
            return all(site_info(s, u) for u in SITES) and answered >= set(SITE_COURTS)

        mod_state = await state_where(mod, every_site_in, "sees every site and answer")
        late = await state_where(self[LATECOMER], lambda s: not s["ringing"], "stops ringing")
        stopped = [e for e in late["events"] if e["type"] == "invitation_stopped"]
        return {
            "conference_id": self.conference_id,
            "waited": waited,
            "kind": kind,
            "kind_shown": await showing(mod, "集中执行行动 · 主持："),
            "talk_s": talk_s,
            "roles": roles,
            "rung": rung,
            "invitations": {
                i["invitee"]: [i["state"], i["by"]["id"] if i["by"] else None]
                for i in conference(mod_state)["invitations"]
            },
            "moderator_sites": [s["user"]["id"] for s in conference(mod_state)["sites"]],
            "moderator_shows_sites": [
                await mod.page.get_by_role("row").filter(has_text=NAMES[u]).is_visible()
                for u in SITES
            ],
            "latecomer_stopped": [[e["reason"], e["by"]["id"]] for e in stopped],
            "latecomer_told": await showing(
                self[LATECOMER], f"{NAMES[SITE_B]}已代表本院加入「{TITLE}」"
            ),
        }

    async def media(self) -> dict[str, Any]:
        mod = self[MODERATOR]
        connection = {}
        for user in (MODERATOR, *SITES):
            state = await state_where(
                self[user],
                lambda s: bool(s["media"]) and s["media"]["connectionState"] == "connected",
                "media connected",
                within=MEDIA_S,
            )
            connection[user] = state["media"]["connectionState"]
        hears_moderator = {}
        spotlight = {}
        for user in SITES:
            page = self[user]
            state = await state_where(
                page,
                lambda s: (
                    audio_slot_of(s, MODERATOR) is not None
                    and conference(s)["lineup"]["spotlight"] == MODERATOR
                ),
                "hears and sees the chair",
                within=MEDIA_S,
            )
            slot = audio_slot_of(state, MODERATOR)
            assert slot is not None
            hears_moderator[user] = {
                "slot": slot,
                "packets": await rising(page, slot, "packetsReceived", MORE_PACKETS),
            }
            spotlight[user] = {
                "source": conference(state)["lineup"]["spotlight"],
                "frames": await rising(page, "spotlight", "framesDecoded", MORE_FRAMES),
            }
        # The moderator's grid: the sites in the order they joined, each tile labelled.
        state = await state_where(
            mod,
            lambda s: conference(s)["lineup"]["grid"][:3] == list(SITES),
            "the grid holds the sites",
            within=MEDIA_S,
        )
        grid_frames = {}
        for i, _user in enumerate(SITES):
            grid_frames[f"grid-{i}"] = await rising(mod, f"grid-{i}", "framesDecoded", MORE_FRAMES)

        async def tile_labelled(user: str) -> bool:
            # A tile (figure) of the grid, captioned with the site's name.
            grid = mod.page.get_by_role("region", name="各席位画面")
            tile = grid.get_by_role("figure").filter(has_text=NAMES[user])
            return await until(tile.is_visible, within=SIGNAL_S, what=f"the tile of {user}")

        labelled = [await tile_labelled(u) for u in SITES]
        first = await outbound_audio(self[SITE_A])
        later = await until(
            lambda: _more(outbound_audio(self[SITE_A]), first + MORE_PACKETS),
            within=MEDIA_S,
            what="A sends audio",
        )
        return {
            "connection": connection,
            "sites_hear_moderator": hears_moderator,
            "sites_spotlight": spotlight,
            "grid": conference(state)["lineup"]["grid"],
            "grid_frames": grid_frames,
            "grid_labelled": labelled,
            "a_sends_audio": [first, later],
        }

    async def floor(self) -> dict[str, Any]:
        a, mod = self[SITE_A], self[MODERATOR]
        await a.button("举手发言").click()
        a_state = await state_where(a, lambda s: floor_of(s) == "queued", "queued")
        queued_text = await showing(a, "已举手，排第1位")

        def a_queued(s: dict[str, Any]) -> bool:
            info = site_info(s, SITE_A)
            return bool(info) and info["floor"]["state"] == "queued"  # type: ignore[index]

        mod_state = await state_where(mod, a_queued, "sees A's hand")
        mod_sees = site_info(mod_state, SITE_A)
        assert mod_sees is not None
        mod_text = await mod.page.get_by_role("row").filter(has_text=a.name).inner_text()

        granted_at = time.monotonic()
        await mod.row_button(SITE_A, "授予发言").click()
        await state_where(a, lambda s: floor_of(s) == "permitted", "holds the floor")
        a_told = await showing(a, "您有发言权：所有席位都能听到您的声音")

        async def hears_a(page: ConferencePage) -> dict[str, Any]:
            state = await state_where(
                page,
                lambda s: (
                    audio_slot_of(s, SITE_A) is not None
                    and conference(s)["lineup"]["spotlight"] == SITE_A
                    and [h["id"] for h in conference(s)["state"]["holders"]] == [SITE_A]
                ),
                "is told A holds the floor",
            )
            slot = audio_slot_of(state, SITE_A)
            assert slot is not None
            packets = await rising(page, slot, "packetsReceived", MORE_PACKETS)
            return {
                "slot": slot,
                "packets": packets,
                # From the moderator's click to half a second of A's audio at this site.
                "after_s": round(time.monotonic() - granted_at, 3),
                "spotlight_frames": await rising(page, "spotlight", "framesDecoded", MORE_FRAMES),
                "shows_spotlight": await showing(page, f"焦点画面：{a.name}"),
            }

        b_hears, c_hears = await asyncio.gather(hears_a(self[SITE_B]), hears_a(self[SITE_C]))
        heard = {SITE_B: b_hears, SITE_C: c_hears}

        # A's time left, read now and again once more than a second has gone by.
        countdown_text = a.page.get_by_text(COUNTDOWN)
        countdown = [await countdown_text.inner_text()]
        counted_at = time.monotonic()
        talking = await self.talking()
        await asyncio.sleep(max(0.0, 1.6 - (time.monotonic() - counted_at)))
        countdown.append(await countdown_text.inner_text())
        return {
            "countdown": [int(COUNTDOWN.fullmatch(text).group(1)) for text in countdown],  # type: ignore[union-attr]
            "talking": talking,
            "site_floor": conference(a_state)["floor"],
            "site_shows_queued": queued_text,
            "moderator_sees": mod_sees["floor"],
            "moderator_row": mod_text,
            "site_told_floor": a_told,
            "heard": heard,
        }

    async def talking(self) -> dict[str, Any]:
        """The moderator's table marks who speaks (A holds the floor; B, without it, speaks
        too); B's mark goes with B's microphone and comes back with it."""
        mod, b = self[MODERATOR], self[SITE_B]
        both = await state_where(
            mod,
            lambda s: {SITE_A, SITE_B} <= set(speaking(s)),
            "is told A and B are speaking",
        )

        def row(user: str) -> Locator:
            return mod.page.get_by_role("row").filter(has_text=NAMES[user])

        async def marked(user: str, mark: bool) -> str:
            async def probe() -> str | None:
                text = await row(user).inner_text()
                return text if (SPEAKING_MARK in text) == mark else None

            return await until(probe, within=SIGNAL_S, what=f"{user}'s row marked {mark}")

        a_row = await marked(SITE_A, True)
        b_row = await marked(SITE_B, True)
        await b.button("关闭麦克风").click()
        b_mic_off = await showing(b, "（您的麦克风已关闭）")
        b_state = await b.state()
        off_at = time.monotonic()
        quiet = await state_where(
            mod,
            lambda s: SITE_B not in speaking(s) and SITE_A in speaking(s),
            "is told B stopped speaking, A did not",
        )
        cleared_after_s = time.monotonic() - off_at
        b_row_quiet = await marked(SITE_B, False)
        # A's beeps go on: its mark is there (a loaded machine may drop it between two
        # beeps for a moment, so it is looked for, not read once).
        a_row_still = await marked(SITE_A, True)
        await b.button("打开麦克风").click()
        again = await state_where(mod, lambda s: SITE_B in speaking(s), "is told B speaks again")
        return {
            "speaking": speaking(both),
            "a_row": a_row,
            "b_row": b_row,
            "b_mic": b_state["mic"],
            "b_mic_off_shown": b_mic_off,
            "quiet": speaking(quiet),
            "cleared_after_s": round(cleared_after_s, 3),
            "b_row_quiet": b_row_quiet,
            "a_row_still": a_row_still,
            "again": speaking(again),
        }

    async def revoke(self) -> dict[str, Any]:
        a, mod = self[SITE_A], self[MODERATOR]
        slots = {u: audio_slot_of(await self[u].state(), SITE_A) for u in (SITE_B, SITE_C)}
        revoked_at = time.monotonic()
        await mod.row_button(SITE_A, "收回发言").click()
        pending = await state_where(a, lambda s: floor_of(s) == "pending_revoke", "warned")
        b_slot = slots[SITE_B]
        assert b_slot is not None
        # Still heard during the grace: B's count goes on until the floor is taken.
        in_grace = [await counter(self[SITE_B], b_slot, "packetsReceived")]
        warned = await showing(a, "主持人正在收回发言权")
        server_now = float(await a.call("window.conf.serverNow()"))
        grace_left_s = (conference(pending)["floor"]["until"] - server_now) / 1000
        taken = await state_where(
            a, lambda s: floor_of(s) == "not_permitted", "loses the floor", within=SIGNAL_S
        )
        in_grace.append(await counter(self[SITE_B], b_slot, "packetsReceived"))
        taken_after_s = time.monotonic() - revoked_at
        stopped = {}
        for user in (SITE_B, SITE_C):
            page = self[user]
            await state_where(
                page, lambda s: audio_slot_of(s, SITE_A) is None, "is told A is not heard"
            )
            slot = slots[user]
            assert slot is not None
            stopped[user] = await stands_still(page, slot, "packetsReceived")
        first = await outbound_audio(a)
        later = await until(
            lambda: _more(outbound_audio(a), first + MORE_PACKETS),
            within=MEDIA_S,
            what="A still sends",
        )
        return {
            "pending": conference(pending)["floor"],
            "grace_left_s": round(grace_left_s, 3),
            "site_warned": warned,
            "taken": conference(taken)["floor"],
            "taken_reason": conference(taken)["floorReason"],
            "taken_after_s": round(taken_after_s, 3),
            "b_packets_in_grace": in_grace,
            "stopped": stopped,
            "a_still_sends": [first, later],
            "site_told_muted": await showing(a, "主持人已静音：您的声音不会被听到"),
        }

    async def mute_all(self) -> dict[str, Any]:
        a, mod = self[SITE_A], self[MODERATOR]
        # A roll call: A is given the floor without asking, and is heard again.
        await mod.row_button(SITE_A, "授予发言").click()
        called = await state_where(a, lambda s: floor_of(s) == "permitted", "called on")
        heard: dict[str, dict[str, Any]] = {}
        for user in (SITE_B, SITE_C):
            page = self[user]
            state = await state_where(
                page, lambda s: audio_slot_of(s, SITE_A) is not None, "hears A again"
            )
            slot = audio_slot_of(state, SITE_A)
            assert slot is not None
            heard[user] = {
                "slot": slot,
                "packets": await rising(page, slot, "packetsReceived", MORE_PACKETS),
            }
        # Open discussion first: every site is heard; then silence.
        await mod.button("全体开放发言").click()
        opened = {}
        for user in SITES:
            state = await state_where(
                self[user], lambda s: conference(s)["state"]["audio"] == "open", "audio open"
            )
            opened[user] = conference(state)["state"]["audio"]
        b_told_open = await showing(self[SITE_B], "全体开放发言：所有席位都能听到您的声音")
        slots = {u: audio_slot_of(await self[u].state(), SITE_A) for u in (SITE_B, SITE_C)}
        muted_at = time.monotonic()
        await mod.button("全体静音").click()
        taken = await state_where(a, lambda s: floor_of(s) == "not_permitted", "muted")
        taken_after_s = time.monotonic() - muted_at
        a_told = await showing(a, "主持人已全体静音")
        stopped = {}
        audio = {}
        for user in (SITE_B, SITE_C):
            page = self[user]
            state = await state_where(
                page,
                lambda s: (
                    audio_slot_of(s, SITE_A) is None and conference(s)["state"]["audio"] == "floor"
                ),
                "is told everyone is muted",
            )
            audio[user] = conference(state)["state"]["audio"]
            slot = slots[user] or heard[user]["slot"]
            stopped[user] = await stands_still(page, slot, "packetsReceived")
        return {
            "called": conference(called)["floor"],
            "heard": heard,
            "opened": opened,
            "b_told_open": b_told_open,
            "taken": conference(taken)["floor"],
            "taken_reason": conference(taken)["floorReason"],
            "taken_after_s": round(taken_after_s, 3),
            "a_told": a_told,
            "audio": audio,
            "stopped": stopped,
            "b_told_muted": await showing(self[SITE_B], "主持人已静音：您的声音不会被听到"),
        }

    async def spotlight(self) -> dict[str, Any]:
        mod, c = self[MODERATOR], self[SITE_C]
        await mod.row_button(SITE_C, "设为焦点").click()
        sources = {}
        frames = {}
        shown = {}
        for user in (SITE_A, SITE_B):
            page = self[user]
            state = await state_where(
                page,
                lambda s: (
                    conference(s)["lineup"]["spotlight"] == SITE_C
                    and (conference(s)["state"]["spotlight"] or {}).get("id") == SITE_C
                ),
                "sees C in the spotlight",
            )
            sources[user] = conference(state)["lineup"]["spotlight"]
            first = await counter(page, "spotlight", "framesDecoded")
            frames[user] = await rising(page, "spotlight", "framesDecoded", MORE_FRAMES * 2)
            frames[user].insert(0, first)
            shown[user] = await showing(page, f"焦点画面：{c.name}")
        c_state = await state_where(
            c, lambda s: (conference(s)["state"]["spotlight"] or {}).get("id") == SITE_C, "is it"
        )
        mod_state = await state_where(
            mod, lambda s: conference(s)["lineup"]["spotlight"] == SITE_C, "sees C"
        )
        return {
            "sources": sources,
            "frames": frames,
            "shown": shown,
            "c_own_spotlight_slot": conference(c_state)["lineup"]["spotlight"],
            "c_told": await showing(c, "焦点画面：本席（其他席位正在看您）"),
            "moderator_source": conference(mod_state)["lineup"]["spotlight"],
        }

    async def witness(self) -> dict[str, Any]:
        mod = self[MODERATOR]
        user, role, court, _ = WITNESS_USER
        w = await open_page(
            self.browser, self.base, user, role, court, scope=f"conference:{self.conference_id}"
        )
        self.pages[WITNESS] = w
        join = w.item_button(f"「{TITLE}」", "加入")
        await until(join.is_visible, within=SIGNAL_S, what="the witness sees the conference")
        await join.click()
        state = await state_where(
            w,
            lambda s: (
                in_conference(s)
                and conference(s)["lineup"]["spotlight"] == SITE_C
                and conference(s)["lineup"]["grid"][:3] == list(SITES)
            ),
            "watches C and the action's grid",
            within=MEDIA_S,
        )
        frames = await rising(w, "spotlight", "framesDecoded", MORE_FRAMES)
        grid_frames = await rising(w, "grid-0", "framesDecoded", MORE_FRAMES)
        shown = await showing(w, f"焦点画面：{NAMES[SITE_C]}")
        told = await showing(w, "您以监督员身份旁听，不能发言")
        buttons = await visible_buttons(w.page.get_by_role("region", name=TITLE, exact=True))
        mod_row = mod.page.get_by_role("row").filter(has_text=NAMES[WITNESS])
        await until(mod_row.is_visible, within=SIGNAL_S, what="the moderator lists the witness")
        media = (await w.state())["media"]
        return {
            "role": conference(state)["role"],
            "spotlight": conference(state)["lineup"]["spotlight"],
            "grid": conference(state)["lineup"]["grid"][:3],
            "frames": frames,
            "grid_frames": grid_frames,
            "shown": shown,
            "told": told,
            "buttons": buttons,
            "mic": state["mic"],
            "local_tracks": media["localTracks"] if media else None,
            "moderator_row": await mod_row.inner_text(),
            "moderator_row_buttons": await visible_buttons(mod_row),
        }

    async def record(self) -> dict[str, Any]:
        mod = self[MODERATOR]
        everyone = (MODERATOR, *SITES, WITNESS)
        await mod.button("开始录制").click()
        recording = {}
        shown = {}
        for user in everyone:
            state = await state_where(
                self[user], lambda s: conference(s)["state"]["recording"], "told it is recorded"
            )
            recording[user] = conference(state)["state"]["recording"]
            shown[user] = await showing(self[user], "● 正在录制")
        stop_offered = await until(
            mod.button("停止录制").is_visible, within=SIGNAL_S, what="the stop button"
        )
        # Started twice: the server refuses, and the page says so in Chinese.
        again = await mod.call("window.conf.record(true)")
        again_told = await showing(mod, "操作未成功：会商已在录制中")
        await mod.button("停止录制").click()
        stopped = {}
        for user in everyone:
            page = self[user]
            state = await state_where(
                page, lambda s: not conference(s)["state"]["recording"], "told it is not"
            )

            async def indicator_gone(page: ConferencePage = page) -> bool:
                return not await page.shows("● 正在录制")

            stopped[user] = {
                "recording": conference(state)["state"]["recording"],
                "indicator_gone": await until(
                    indicator_gone, within=SIGNAL_S, what=f"{user}: indicator gone"
                ),
            }
        start_offered = await until(
            mod.button("开始录制").is_visible, within=SIGNAL_S, what="the start button"
        )
        evidence = await until(self.recorded, within=SIGNAL_S, what="the recording filed")
        # The witness goes: the phases after this one count the sites without it.
        w = self[WITNESS]
        await w.button("退出会商").click()
        await state_where(mod, lambda s: site_info(s, WITNESS) is None, "the witness gone")
        await w.close()
        del self.pages[WITNESS]
        return {
            "recording": recording,
            "shown": shown,
            "stop_offered": stop_offered,
            "again": again,
            "again_told": again_told,
            "stopped": stopped,
            "start_offered": start_offered,
            "evidence": evidence,
        }

    async def recorded(self) -> list[list[str]] | None:
        """The conference's evidence, as the moderator lists it: [kind, media type] each."""
        user, role, court, name = USERS[0]
        headers = {"Authorization": f"Bearer {token(user, role, court, name)}"}
        url = f"{self.base}/api/evidence"
        async with (
            aiohttp.ClientSession() as http,
            http.get(url, params={"case": self.conference_id}, headers=headers) as resp,
        ):
            items = (await resp.json())["items"] if resp.status == 200 else []
        return sorted([i["kind"], i["media_type"]] for i in items) or None

    async def feeds(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http:
            officer, operator = [await self.line(http, *user) for user in CALLERS]
            try:
                return await self.share(officer, operator)
            finally:
                await officer.send("hangup", call_id=self.call_id)
                await officer.close()
                await operator.close()

    async def line(
        self, http: aiohttp.ClientSession, user: str, role: Role, court: str, name: str
    ) -> Client:
        """A bare protocol client signed in as `user`."""
        query = f"token={token(user, role, court, name)}&v=1"
        client = Client(await http.ws_connect(f"{self.base}/ws?{query}"), "json", user)
        client.welcome = await client.expect("welcome", SIGNAL_S)
        return client

    async def share(self, officer: Client, operator: Client) -> dict[str, Any]:
        mod = self[MODERATOR]
        pages = (MODERATOR, *SITES)
        self.call_id = (await officer.request("call_center", reply="call_placed"))["call_id"]
        await operator.expect("call_ringing", SIGNAL_S)
        await operator.request("accept", call_id=self.call_id)
        await officer.expect("call_answered", SIGNAL_S)

        form = mod.page.get_by_role("form", name="接入现场通话")
        await form.get_by_label("通话编号").fill("c-0000000000000000")
        await form.get_by_role("button", name="接入会商").click()
        refused = await state_where(
            mod, lambda s: (s["lastError"] or {}).get("action") == "share_call", "is refused"
        )
        told = await showing(mod, "操作未成功：没有这个通话")
        none_before = {u: await self[u].shows("暂无接入的通话") for u in pages}

        await form.get_by_label("通话编号").fill(self.call_id)
        await form.get_by_role("button", name="接入会商").click()
        item = f"{NAMES[OFFICER]}（P0101）的现场通话 · {NAMES[MODERATOR]}接入"
        shared = {}
        for user in pages:
            state = await state_where(
                self[user], lambda s: bool(conference(s)["state"]["feeds"]), "lists the call"
            )
            cstate = conference(state)["state"]
            shared[user] = {
                "feeds": [
                    [f["call_id"], f["officer"]["id"], f["by"]["id"]] for f in cstate["feeds"]
                ],
                "spotlight": (cstate["spotlight"] or {}).get("id"),
                "listed": await showing(self[user], item),
                "may_stop": await self[user].item_button(item, "停止接入").is_visible(),
            }
        await mod.item_button(item, "停止接入").click()
        unshared = {}
        for user in pages:
            state = await state_where(
                self[user], lambda s: not conference(s)["state"]["feeds"], "the call gone"
            )
            unshared[user] = {
                "feeds": conference(state)["state"]["feeds"],
                "none_shown": await showing(self[user], "暂无接入的通话"),
            }
        return {
            "call_id": self.call_id,
            "refused": refused["lastError"],
            "told": told,
            "none_before": none_before,
            "shared": shared,
            "unshared": unshared,
        }

    async def conflict(self) -> dict[str, Any]:
        mod, b = self[MODERATOR], self[SITE_B]
        before = await mod.state()
        # Decided on the state as it was when the conference began: long since changed.
        result = await mod.call("u => window.conf.spotlight(u, {revision: 0})", SITE_A)
        after = await state_where(mod, lambda s: s["refreshes"] > before["refreshes"], "refreshed")
        b_state = await b.state()
        return {
            "result": result,
            "conflicts": after["conflicts"] - before["conflicts"],
            "revision": after["revision"],
            "site_revision": conference(b_state)["state"]["revision"],
            "spotlight": (conference(after)["state"]["spotlight"] or {}).get("id"),
            "told": await showing(mod, "其他主持人刚刚改变了会商状态"),
        }

    async def lock(self) -> dict[str, Any]:
        mod, late = self[MODERATOR], self[LATECOMER]
        await mod.button("锁定会商").click()
        locked = {}
        for user in (MODERATOR, *SITES):
            state = await state_where(
                self[user], lambda s: conference(s)["state"]["locked"], "sees it locked"
            )
            locked[user] = conference(state)["state"]["locked"]
        unlock_offered = await until(
            lambda: mod.button("解除锁定").is_visible(), within=SIGNAL_S, what="unlock button"
        )
        await late.button("刷新列表").click()
        join = late.item_button(f"「{TITLE}」", "加入")
        await until(join.is_visible, within=SIGNAL_S, what="the latecomer sees the conference")
        await join.click()
        refused = await state_where(
            late,
            lambda s: (s["lastError"] or {}).get("action") == "join_conference",
            "is refused",
        )
        return {
            "locked": locked,
            "unlock_offered": unlock_offered,
            "latecomer_error": refused["lastError"],
            "latecomer_in": in_conference(refused),
            "latecomer_told": await showing(late, "会商已锁定，不能加入"),
        }

    async def remove(self) -> dict[str, Any]:
        mod, b = self[MODERATOR], self[SITE_B]
        await mod.row_button(SITE_B, "移出并禁止再加入").click()
        out = await state_where(b, lambda s: s["left"] is not None, "is removed")
        told = await showing(b, f"您已被{NAMES[MODERATOR]}移出会商，且不能再加入")
        mod_state = await state_where(mod, lambda s: site_info(s, SITE_B) is None, "B gone")
        # Unlocked, so that what refuses B is the ban alone.
        await mod.button("解除锁定").click()
        await state_where(b, lambda s: not s["conference"], "out")
        await state_where(
            self[SITE_A], lambda s: not conference(s)["state"]["locked"], "sees it unlocked"
        )
        await b.button("刷新列表").click()
        join = b.item_button(f"「{TITLE}」", "加入")
        await until(join.is_visible, within=SIGNAL_S, what="B sees the conference")
        await join.click()
        refused = await state_where(
            b,
            lambda s: (s["lastError"] or {}).get("action") == "join_conference",
            "is refused",
        )
        return {
            "left": out["left"],
            "in_conference": in_conference(out),
            "media": out["media"],
            "told": told,
            "moderator_sites": [s["user"]["id"] for s in conference(mod_state)["sites"]],
            "rejoin_error": refused["lastError"],
            "rejoin_in": in_conference(refused),
            "rejoin_told": await showing(b, "您已被移出本会商，不能再加入"),
        }

    async def chair(self) -> dict[str, Any]:
        mod, a, c = self[MODERATOR], self[SITE_A], self[SITE_C]
        rules = mod.page.get_by_role("form", name="发言规则")
        await rules.get_by_label("最多同时发言席位").fill("2")
        await rules.get_by_label("每次发言时限").fill(str(TALK_S))
        await rules.get_by_label("发言方式").select_option(label="举手即发言")
        await mod.button("应用发言规则").click()
        applied = {}
        for user in (MODERATOR, SITE_A, SITE_C):
            state = await state_where(
                self[user], lambda s: conference(s)["state"]["mode"] == "open", "open floor"
            )
            applied[user] = {
                k: conference(state)["state"][k] for k in ("mode", "max_speakers", "max_talk_s")
            }
        # An open floor with room: the raised hand is granted at once, for the talk time.
        await a.button("举手发言").click()
        granted = await state_where(a, lambda s: floor_of(s) == "permitted", "granted at once")
        countdown = []
        for _ in range(2):
            text = await a.page.get_by_text(re.compile(r"^您有发言权，剩余\d+秒$")).inner_text()
            countdown.append(int(re.sub(r"\D", "", text)))
            # Longer than a second and the page's redraw: the count must have gone down.
            await asyncio.sleep(1.6)
        # C is named co-moderator: its page becomes a moderator's, with the grid.
        await mod.row_button(SITE_C, "设为联席主持人").click()
        named = await state_where(
            c,
            lambda s: (
                conference(s)["role"] == "moderator" and SITE_A in conference(s)["lineup"]["grid"]
            ),
            "a moderator with the grid",
            within=MEDIA_S,
        )
        c_sees_a_row = await until(
            c.row_button(SITE_A, "收回发言").is_visible, within=SIGNAL_S, what="C's sites table"
        )
        grid_slot = f"grid-{conference(named)['lineup']['grid'].index(SITE_A)}"
        c_grid_frames = await rising(c, grid_slot, "framesDecoded", MORE_FRAMES)
        # Then the chair goes to C.
        await mod.row_button(SITE_C, "移交主持").click()
        chairs = {}
        for user in (MODERATOR, SITE_A, SITE_C):
            state = await state_where(
                self[user],
                lambda s: (conference(s)["state"]["chair"] or {}).get("id") == SITE_C,
                "C chairs",
            )
            chairs[user] = conference(state)["state"]["chair"]["id"]
        mod_may_name = await mod.row_button(SITE_A, "设为联席主持人").is_visible()
        c_may_name = await c.row_button(SITE_A, "设为联席主持人").is_visible()
        # The new chair rings the latecomer by id (邀请参会), then withdraws it (撤回邀请).
        late = self[LATECOMER]
        await c.page.get_by_label("邀请人员（用户编号）").fill(LATECOMER)
        await c.button("邀请参会").click()
        rung = await state_where(
            late, lambda s: self.conference_id in s["ringing"], "rung by the chair"
        )
        # Named as the page knows the user, else by id.
        invited = c.page.get_by_role("listitem").filter(
            has_text=re.compile(f"人员 ({LATECOMER}|{NAMES[LATECOMER]})：")
        )
        await invited.get_by_role("button", name="撤回邀请", exact=True).click()
        unrung = await state_where(
            late, lambda s: self.conference_id not in s["ringing"], "no longer rung"
        )
        stopped = [e for e in unrung["events"] if e["type"] == "invitation_stopped"][-1]
        withdrawn_shown = await until(
            lambda: invited.filter(has_text="已撤回").is_visible(), within=SIGNAL_S, what="已撤回"
        )
        # The chair takes the old chair's part back (取消联席主持人), then names them again.
        await c.row_button(MODERATOR, "取消联席主持人").click()
        unnamed = await state_where(
            c, lambda s: (site_info(s, MODERATOR) or {}).get("role") == "site", "a site again"
        )
        # The one taken back is told: its own page leaves the moderator's view.
        demoted = await state_where(
            mod, lambda s: conference(s)["role"] == "site", "its own page a site's"
        )
        await c.row_button(MODERATOR, "设为联席主持人").click()
        renamed = await state_where(
            c,
            lambda s: (site_info(s, MODERATOR) or {}).get("role") == "moderator",
            "a moderator again",
        )
        return {
            "applied": applied,
            "granted": conference(granted)["floor"],
            "countdown": countdown,
            "c_role": conference(named)["role"],
            "c_grid": conference(named)["lineup"]["grid"],
            "c_sees_sites": c_sees_a_row,
            "c_grid_frames": c_grid_frames,
            "chairs": chairs,
            "old_chair_may_name": mod_may_name,
            "new_chair_may_name": c_may_name,
            "late_rung": self.conference_id in rung["ringing"],
            "late_stopped": [stopped.get("reason"), (stopped.get("by") or {}).get("id")],
            "withdrawn_shown": withdrawn_shown,
            "old_chair_roles": [
                (site_info(unnamed, MODERATOR) or {}).get("role"),
                (site_info(renamed, MODERATOR) or {}).get("role"),
            ],
            "old_chair_page_role": conference(demoted)["role"],
        }

    async def end(self) -> dict[str, Any]:
        mod = self[MODERATOR]
        await mod.button("结束会商").click()
        ended = {}
        told = {}
        for user in (MODERATOR, SITE_A, SITE_C):
            state = await state_where(self[user], lambda s: s["ended"] is not None, "told")
            ended[user] = {
                "ended": state["ended"],
                "in_conference": in_conference(state),
                "media": state["media"],
            }
            told[user] = await showing(self[user], f"{NAMES[MODERATOR]}已结束会商")
        return {"ended": ended, "told": told}


async def _more(value: Awaitable[int], than: int) -> int | None:
    got = await value
    return got if got >= than else None


async def snapshot(page: ConferencePage) -> dict[str, Any]:
    try:
        state = await page.state()
        state.pop("events", None)
        state.pop("conferences", None)
        return {"state": state, "stats": await page.stats()}
    except Exception as exc:
        return {"error": str(exc)}


async def drive(base: str, phases: Sequence[str], result: dict[str, Any]) -> None:
    pages: dict[str, ConferencePage] = {}
    async with async_playwright() as playwright:
        browser = await launch(playwright)
        try:
            for user, role, court, _ in USERS:
                pages[user] = await open_page(browser, base, user, role, court)
            scenario = Scenario(pages, browser, base)
            steps: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
                name: getattr(scenario, name) for name in PHASES
            }
            for phase in PHASES:
                if phase in phases:
                    result["phase"] = phase
                    started = time.monotonic()
                    result[phase] = await steps[phase]()
                    result[phase]["phase_s"] = round(time.monotonic() - started, 3)
            del result["phase"]
        except Exception:
            result["pages"] = {u: await snapshot(p) for u, p in pages.items()}
            raise
        finally:
            result["console"] = {u: p.console[-20:] for u, p in pages.items() if p.console}
            # Every line Chromium wrote about the Content-Security-Policy blocking something.
            result["csp_blocked"] = [
                f"{u}: {line}"
                for u, p in pages.items()
                for line in p.console
                if "Content Security Policy" in line or "Content-Security-Policy" in line
            ]
            await browser.close()


async def run(phases: list[str], workdir: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"phases": phases}
    started = time.monotonic()
    server = ServerProcess(workdir, extra_env=SERVER_ENV)
    try:
        await server.wait_healthy()
        await server.check_app()
        await drive(server.base, phases, result)
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc(limit=6)
    finally:
        server.stop()
        if "error" in result:
            result["server_log_tail"] = server.log_tail()
    result["elapsed_s"] = round(time.monotonic() - started, 2)
    return result


def main(argv: list[str]) -> int:
    phases = argv or list(PHASES)
    unknown = set(phases) - set(PHASES)
    if unknown:
        print(json.dumps({"error": f"unknown phases {sorted(unknown)}"}))
        return 2
    # The namespace starts with `lo` down: nothing, not even 127.0.0.1, would answer.
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory(prefix="cc-browser-conference-") as tmp:
        result = asyncio.run(run(phases, Path(tmp)))
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
