"""The evidence player's views (commandcenter/player_views.py), pure: which range requests a
view covers, for how long, and how many views a node keeps; time is an argument."""

from __future__ import annotations

import pytest

from commandcenter.player_views import MAX_VIEW_S, PlayerViews

T0 = 1_767_225_600.0
V1, V2, V3 = "a" * 22, "b" * 22, "c" * 22
EV = "ev-" + "1" * 32


def test_a_view_covers_its_users_requests_for_its_item_only() -> None:
    views = PlayerViews()
    views.open(V1, "o1", EV, T0 + 3600, T0)
    assert views.covers(V1, "o1", EV, T0 + 10)
    assert not views.covers(V1, "o2", EV, T0 + 10)
    assert not views.covers(V1, "o1", "ev-" + "2" * 32, T0 + 10)
    assert not views.covers(V2, "o1", EV, T0 + 10)


def test_a_view_ends_with_its_token_and_at_most_after_the_longest_view() -> None:
    views = PlayerViews()
    assert views.open(V1, "o1", EV, T0 + 60, T0) == T0 + 60
    assert not views.covers(V1, "o1", EV, T0 + 60)
    assert views.open(V2, "o1", EV, T0 + 10 * MAX_VIEW_S, T0) == T0 + MAX_VIEW_S
    assert views.covers(V2, "o1", EV, T0 + MAX_VIEW_S - 1)
    assert not views.covers(V2, "o1", EV, T0 + MAX_VIEW_S)


def test_expired_views_are_dropped_and_the_oldest_go_first_past_the_limit() -> None:
    views = PlayerViews(limit=2)
    views.open(V1, "o1", EV, T0 + 60, T0)
    views.open(V2, "o1", EV, T0 + 3600, T0)
    views.open(V3, "o1", EV, T0 + 3600, T0 + 1)
    assert len(views) == 2
    assert not views.covers(V1, "o1", EV, T0 + 2)  # evicted, though not expired
    assert views.covers(V3, "o1", EV, T0 + 2)
    views.open("d" * 22, "o1", EV, T0 + 9000, T0 + 3600)
    assert len(views) == 1  # V2 and V3 expired on the way


def test_an_id_that_is_not_a_view_id_is_refused() -> None:
    with pytest.raises(ValueError, match="not a view id"):
        PlayerViews().open("short", "o1", EV, T0 + 60, T0)
