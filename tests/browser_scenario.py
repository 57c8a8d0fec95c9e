"""Browser scenarios, run inside a network namespace by tests/test_browser.py:

    unshare -n -- python -m tests.browser_scenario signalling media join restart leave

It brings `lo` up, starts the real server, launches headless Chromium with fake devices,
drives pages of the web client through `window.cc`, and prints ONE JSON line: what each
phase measured, or the error that stopped it with the tail of the server's log. The phases
build on each other, in this order (a later one needs the earlier ones):

- signalling: officer, operator and supervisor pages sign in; the officer calls the center,
  the operator accepts; the officer's page gets its fake camera and microphone;
- media: operator and officer each decode the other's video and hear their audio;
- join: the supervisor joins mid-call and decodes the officer's video;
- restart: the media worker process relaying the call is killed (SIGKILL); every page is
  told `media_restart`, offers again from a new peer connection and decodes video again;
- leave: the officer's page is closed without hanging up; the operator is told, the
  officer's video stops reaching them and the server renegotiates the officer's tracks away;
  then the operator hangs up.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import async_playwright

from commandcenter.auth import Role
from tests.browser import ServerProcess, UserPage, launch, open_page, until

PHASES = ("signalling", "media", "join", "restart", "leave")
OFFICER, OPERATOR, SUPERVISOR = "o-1", "op-1", "sv-1"
COURT, SUPERVISOR_COURT = "P0101", "P01"
# Generous next to what they take here (see the issue: first frame about 0.5 s), so that a
# loaded CI machine does not fail them; the run as a whole is bounded by the pytest test.
SIGNAL_S = 10.0
MEDIA_S = 15.0
# The officer's video counts as stopped once its frame count stays put this long.
STILL_S = 1.0

Stats = list[dict[str, Any]]


def inbound(stats: Stats, stream: str, kind: str) -> dict[str, Any] | None:
    """The inbound RTP stream of `kind` published by user `stream` (the most used, if the
    server renegotiated and there are several)."""
    found = [s for s in stats if s["stream"] == stream and s["kind"] == kind]
    return max(found, key=lambda s: s.get("packetsReceived") or 0, default=None)


def frames(stats: Stats, stream: str) -> int:
    video = inbound(stats, stream, "video")
    return int(video.get("framesDecoded") or 0) if video else 0


class Scenario:
    def __init__(self, pages: dict[str, UserPage], base: str) -> None:
        self.pages = pages
        self.base = base
        self.call_id = ""
        self.accepted_at = 0.0

    async def signalling(self) -> dict[str, Any]:
        officer, operator = self.pages[OFFICER], self.pages[OPERATOR]
        users = {u: (await p.state())["user"]["id"] for u, p in self.pages.items()}
        self.call_id = await officer.page.evaluate("window.cc.callCenter()")

        async def ringing() -> bool:
            return self.call_id in (await operator.state())["ringing"]

        await until(ringing, within=SIGNAL_S, what="the call rings at the operator")
        await operator.page.evaluate("id => window.cc.accept(id)", self.call_id)
        self.accepted_at = time.monotonic()

        async def active(page: UserPage) -> bool:
            call = (await page.state())["call"]
            return bool(call) and call["call_id"] == self.call_id and call["state"] == "active"

        for page in (officer, operator):
            what = f"{page.user} in the call"
            await until(functools.partial(active, page), within=SIGNAL_S, what=what)

        async def media_started() -> dict[str, Any] | None:
            # Camera and microphone granted, and the first ICE candidates gathered.
            media: dict[str, Any] | None = (await officer.state())["media"]
            return media if media and media["localTracks"] and media["localCandidates"] else None

        media = await until(media_started, within=SIGNAL_S, what="the officer's camera")
        return {
            "users": users,
            "call_id": self.call_id,
            "local_tracks": sorted(media["localTracks"]),
            "officer_candidates": media["localCandidates"],
        }

    async def media(self) -> dict[str, Any]:
        officer, operator = self.pages[OFFICER], self.pages[OPERATOR]
        return {
            "operator_sees_officer": await self.receives(operator, OFFICER, since=self.accepted_at),
            "officer_sees_operator": await self.receives(officer, OPERATOR, since=self.accepted_at),
            "officer_connection": (await officer.state())["media"]["connectionState"],
        }

    async def receives(self, page: UserPage, publisher: str, *, since: float) -> dict[str, Any]:
        """Wait until `page` decodes video from `publisher` (and hears its audio), and its
        frame count rises between two samples."""

        async def first_frame() -> dict[str, Any] | None:
            video = inbound(await page.inbound(), publisher, "video")
            decoded = video and video.get("framesDecoded") and video.get("frameWidth")
            return video if decoded else None

        what = f"{page.user} decodes {publisher}'s video"
        video = await until(first_frame, within=MEDIA_S, what=what, every=0.02)
        first_frame_s = time.monotonic() - since

        async def audio_energy() -> dict[str, Any] | None:
            audio = inbound(await page.inbound(), publisher, "audio")
            return audio if audio and (audio.get("totalAudioEnergy") or 0) > 0 else None

        what = f"{page.user} hears {publisher}"
        audio = await until(audio_energy, within=MEDIA_S, what=what)

        async def rising() -> dict[str, Any] | None:
            later = inbound(await page.inbound(), publisher, "video")
            return later if later and later["framesDecoded"] > video["framesDecoded"] else None

        later = await until(rising, within=MEDIA_S, what=f"{publisher}'s video keeps coming")
        return {
            "first_frame_s": round(first_frame_s, 3),
            "frames_decoded": [video["framesDecoded"], later["framesDecoded"]],
            "frame_width": later["frameWidth"],
            "frame_height": later["frameHeight"],
            "total_audio_energy": audio["totalAudioEnergy"],
            "audio_level": audio["audioLevel"],
        }

    async def join(self) -> dict[str, Any]:
        supervisor = self.pages[SUPERVISOR]
        joined_at = time.monotonic()
        await supervisor.page.evaluate("id => window.cc.join(id)", self.call_id)
        seen = await self.receives(supervisor, OFFICER, since=joined_at)
        media = (await supervisor.state())["media"]
        return {
            "join_to_first_frame_s": seen["first_frame_s"],
            "officer": seen,
            "remote_streams": sorted(media["remoteStreams"]),
        }

    async def restart(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http:

            async def call_worker() -> int | None:
                async with http.get(f"{self.base}/healthz") as resp:
                    workers = (await resp.json())["media_workers"]
                return next((int(w["pid"]) for w in workers if w["rooms"]), None)

            pid = await until(call_worker, within=SIGNAL_S, what="the call's media worker")
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)

        async def told(page: UserPage) -> bool:
            events = (await page.state())["events"]
            return any(
                e["type"] == "media_restart" and e.get("call_id") == self.call_id for e in events
            )

        for page in self.pages.values():
            await until(functools.partial(told, page), within=SIGNAL_S, what=f"{page.user} told")
        operator = self.pages[OPERATOR]
        seen = await self.receives(operator, OFFICER, since=killed_at)
        supervisor = await self.receives(self.pages[SUPERVISOR], OFFICER, since=killed_at)
        officer = await self.receives(self.pages[OFFICER], OPERATOR, since=killed_at)
        return {
            "kill_to_first_frame_s": seen["first_frame_s"],
            "operator_sees_officer": seen,
            "supervisor_sees_officer": supervisor,
            "officer_sees_operator": officer,
        }

    async def leave(self) -> dict[str, Any]:
        operator = self.pages[OPERATOR]
        officer = self.pages.pop(OFFICER)
        closed_at = time.monotonic()
        # Closing the page, not hanging up: the socket and the peer connection just vanish.
        await officer.close()

        async def told() -> list[str]:
            events = (await operator.state())["events"]
            return [
                e["type"]
                for e in events
                if e.get("call_id") == self.call_id
                and e["type"] in ("party_away", "call_ended")
                and (e["type"] == "call_ended" or e["user"]["id"] == OFFICER)
            ]

        told_as = await until(told, within=SIGNAL_S, what="the operator is told the officer left")
        told_s = time.monotonic() - closed_at
        samples: list[tuple[float, int]] = []

        async def still() -> bool:
            now = time.monotonic()
            samples.append((now, frames(await operator.inbound(), OFFICER)))
            window = [n for t, n in samples if t >= now - STILL_S]
            return samples[0][0] <= now - STILL_S and len(set(window)) == 1

        await until(still, within=MEDIA_S, what="the officer's video stops reaching the operator")
        last = samples[-1][1]
        # Sampling starts once the operator is told, so this is "stopped by", not "stopped at".
        still_by = next(t for t, n in samples if n == last) - closed_at

        async def removed() -> bool:
            # The server renegotiates the officer's m-lines away; the page drops their tile.
            media = (await operator.state())["media"]
            return bool(media) and OFFICER not in media["remoteStreams"]

        await until(removed, within=MEDIA_S, what="the officer's tracks leave the operator's page")
        removed_s = time.monotonic() - closed_at
        media = (await operator.state())["media"]
        left = {
            "operator_told": told_as,
            "told_after_s": round(told_s, 3),
            "frames_still_by_s": round(still_by, 3),
            "tracks_removed_after_s": round(removed_s, 3),
            "operator_remote_streams": sorted(media["remoteStreams"]),
            "operator_connection": media["connectionState"],
        }
        # The operator ends the call; the page drops the call and its peer connection.
        await operator.page.evaluate("window.cc.hangup()")

        async def hung_up() -> bool:
            state = await operator.state()
            return state["call"] is None and state["media"] is None

        await until(hung_up, within=SIGNAL_S, what="the operator's page leaves the call")
        left["operator_hung_up"] = True
        return left


async def snapshot(page: UserPage) -> dict[str, Any]:
    try:
        state = await page.state()
        return {"media": state["media"], "inbound": await page.inbound()}
    except Exception as exc:
        return {"error": str(exc)}


async def drive(
    users: list[tuple[str, Role, str, str]], phases: Sequence[str], result: dict[str, Any]
) -> None:
    """Open a page of the web client for each (user, role, court, server base URL) in
    headless Chromium, and run `phases` of `Scenario` in their order, each one's measurements
    into `result` (with the pages' media and console when one fails)."""
    pages: dict[str, UserPage] = {}
    async with async_playwright() as playwright:
        browser = await launch(playwright)
        try:
            for user, role, court, base in users:
                pages[user] = await open_page(browser, base, user=user, role=role, court=court)
            scenario = Scenario(pages, users[0][3])
            steps: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
                "signalling": scenario.signalling,
                "media": scenario.media,
                "join": scenario.join,
                "restart": scenario.restart,
                "leave": scenario.leave,
            }
            for phase in PHASES:
                if phase in phases:
                    result["phase"] = phase
                    result[phase] = await steps[phase]()
            del result["phase"]
        except Exception:
            # What each page's media looked like when it went wrong.
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
    server = ServerProcess(workdir)
    try:
        await server.wait_healthy()
        await server.check_app()
        users = [
            (OFFICER, Role.OFFICER, COURT, server.base),
            (OPERATOR, Role.OPERATOR, COURT, server.base),
            (SUPERVISOR, Role.SUPERVISOR, SUPERVISOR_COURT, server.base),
        ]
        await drive(users, phases, result)
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc(limit=4)
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
    with tempfile.TemporaryDirectory(prefix="cc-browser-") as tmp:
        result = asyncio.run(run(phases, Path(tmp)))
    print(json.dumps(result), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
