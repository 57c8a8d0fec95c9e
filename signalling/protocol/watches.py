"""The video wall's watches: an operator or supervisor watches an officer's camera without a
call (docs/protocol.md, *Watching an officer*). The officer's page publishes video only, in a
media session named by the watch id; every watcher of that officer receives it from there.
"""

from __future__ import annotations

from typing import Literal

from signalling.protocol.base import CallId, UserId, UserInfo, _ClientMessage, _ServerMessage

# Why a watcher's watch ended without their asking: the officer went offline (or lost their
# connection), the watcher's own connection went, the server stops, or (several nodes) the
# node that decided for the cluster died with it.
WatchEndReason = Literal["stopped", "officer_offline", "watcher_gone", "shutdown", "node_lost"]
# A video wall's layouts: how many tiles it shows at once (an enlarged tile is 1).
WallTiles = Literal[1, 4, 9, 16]

# --- client to server --------------------------------------------------------------------


class Watch(_ClientMessage, tag="watch", frozen=True):
    officer: UserId


class Unwatch(_ClientMessage, tag="unwatch", frozen=True):
    watch_id: CallId


class WallLayout(_ClientMessage, tag="wall_layout", frozen=True):
    """The sender's wall shows this many tiles: its watches' officers send no more than
    its tiles show (`video_policy`)."""

    tiles: WallTiles


# --- server to client --------------------------------------------------------------------


class Watching(_ServerMessage, tag="watching", frozen=True):
    """The reply to `watch`: offer in `watch_id` (receive only) to see the officer."""

    ref: str
    watch_id: str
    officer: UserInfo


class WatchOpened(_ServerMessage, tag="watch_opened", frozen=True):
    """To the officer: the center watches; publish your camera (video only) in `watch_id`."""

    watch_id: str


class WatchClosed(_ServerMessage, tag="watch_closed", frozen=True):
    """To the officer: nobody watches any more; close the watch's media session."""

    watch_id: str


class WatchEnded(_ServerMessage, tag="watch_ended", frozen=True):
    """To a watcher: their watch ended without their asking (`reason`)."""

    watch_id: str
    officer: str
    reason: WatchEndReason


class VideoPolicy(_ServerMessage, tag="video_policy", frozen=True):
    """To an officer: send the watch's video no larger than this (`null`: no cap), the
    most any wall watching needs."""

    watch_id: str
    max_height: int | None
    max_fps: int | None
    max_kbps: int | None
