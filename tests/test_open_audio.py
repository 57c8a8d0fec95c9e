"""Open discussion over two media workers (media.loudest, media.span): six sites speak at
once, each at its own RFC 6464 level, four on the worker that is not home and two on home.
Real MediaServices with their real fabric sockets, real aiortc sites (tests.test_media_fabric).

The worker that is not home sends home the audio of its three loudest sites only, and names
them in VOICES frames; home's final pick (and every worker's) is the three loudest of all."""

from __future__ import annotations

import collections
from functools import partial

import msgspec
import pytest

from media.conference_room import ConferenceRoom
from tests.mediahelpers import ToneTrack
from tests.polling import wait_until
from tests.test_media_fabric import CONFIG, Site, chair_stage, conference, fabric_workers

# Peak amplitudes: 12000 is about -12 dBov, each halving about 6 dB quieter.
LOUDNESS = {"a": 12000, "b": 6000, "c": 3000, "d": 1500, "e": 400, "f": 250}
WHERE = {"chair": 0, "b": 0, "e": 0, "listener": 1, "a": 1, "c": 1, "d": 1, "f": 1}
LOUDEST = ["a", "b", "c"]


def slotted(room: ConferenceRoom) -> bool:
    return sorted(u for u in room.line.audio if u) == LOUDEST


def told_loudest(site: Site) -> bool:
    return bool(site.told) and sorted(u for u in site.told[-1].audio if u) == LOUDEST


@pytest.mark.parametrize("preselect", [True, False])
async def test_home_takes_at_most_three_voices_per_worker_and_every_site_hears_the_loudest(
    preselect: bool,
) -> None:
    config = msgspec.structs.replace(CONFIG, open_audio_preselect=preselect)
    async with fabric_workers(2, config) as workers, conference(workers, 0, WHERE) as conf:
        conf.stage(chair_stage(open=True))
        chair = await conf.join("chair")
        listener = await conf.join("listener")
        # Loudest first, so the quiet ones find the places taken (hysteresis keeps them).
        for user in sorted(LOUDNESS, key=lambda u: -LOUDNESS[u]):
            await conf.join(user, [ToneTrack(amplitude=LOUDNESS[user])])
        home, other = workers[0].span(), workers[1].span()

        for worker in workers:
            await wait_until(
                partial(slotted, worker.room()),
                within=15.0,
                what=f"the three loudest in worker {worker.index}'s audio slots",
            )
        for site in (chair, listener):
            await wait_until(
                partial(told_loudest, site),
                within=10.0,
                what=f"{site.user} told it hears the three loudest",
            )
        # They are heard: packets of each flow to the listener's slots (b through home).
        room1 = workers[1].room()
        sent = {u: room1.sent_from(u, "audio") for u in LOUDEST}
        await wait_until(
            lambda: all(room1.sent_from(u, "audio") >= sent[u] + 25 for u in LOUDEST),
            within=10.0,
            what="the three loudest forwarded to the listener",
        )

        # What home takes from worker 1 now, over a second of speech.
        before = collections.Counter(home.audio_in)
        await wait_until(
            lambda: home.audio_in["a:audio"] >= before["a:audio"] + 50,
            within=10.0,
            what="a second of a's audio at home",
        )
        taken = {t for t, n in home.audio_in.items() if n > before[t]}
        if preselect:
            assert taken == {"a:audio", "c:audio", "d:audio"}, taken
            assert other.held_back["f:audio"] > 0
            assert home.audio_in["f:audio"] == 0
            await wait_until(
                lambda: [u for u, _ in home.voices.get(1, ())] == ["a", "c", "d"],
                within=5.0,
                what="worker 1's VOICES naming a, c, d loudest first",
            )
            levels = [lvl for _, lvl in home.voices[1]]
            assert levels == sorted(levels), levels
            assert levels[0] < 20, levels
        else:
            # The switch off: every site's audio goes home, as before.
            assert taken == {"a:audio", "c:audio", "d:audio", "f:audio"}, taken
            assert not other.held_back
            assert home.voices == {}
