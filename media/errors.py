"""Errors of the media layer. They are the client's fault (a bad SDP, an answer nobody asked
for), so they are signalling client errors with their own wire codes: the hub answers them
like any other (signalling.hub is the one place that turns them into `error` frames)."""

from __future__ import annotations

from signalling.errors import InvalidState, NegotiationFailed

__all__ = ["NegotiationFailed", "WrongState"]


class WrongState(InvalidState):
    """An answer or candidate with no media session (or no server offer) to apply it to."""
