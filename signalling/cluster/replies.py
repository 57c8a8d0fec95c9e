"""The replies a gateway waits for: every client message gets exactly one reply (protocol.md),
and across nodes that reply travels back from the authority over Redis pub/sub, which
delivers at most once. A reply lost on the way (a failed Redis batch, an authority killed
between taking a message and answering it) would leave the client waiting for ever. So the
gateway notes each message it forwards, and a message not answered within
`redis.reply_timeout_s` is answered by the gateway itself, `unavailable` ("retry"); a reply
that arrives after that is dropped, so the client still gets exactly one. The gateway's own
answer goes straight to the connection (an `Outbox.reply`), never through `answered`: routed
like the authority's replies, it could follow a stale route to another node and be lost.

Pure: time is an argument; the gateway's loop asks for what is due.
"""

from __future__ import annotations

import collections
from typing import Final

# Refs remembered per user as answered by timeout, to drop their late replies; older ones
# are forgotten (a reply later than this many others is not worth keeping memory for).
MAX_LATE_PER_USER: Final = 64


class AwaitedReplies:
    def __init__(self, timeout_s: float) -> None:
        if not timeout_s > 0:
            raise ValueError("timeout_s must be positive")
        self.timeout_s = timeout_s
        # (user, ref) -> deadline, in the order they were sent (deadlines ascend).
        self._waiting: collections.OrderedDict[tuple[str, str], float] = collections.OrderedDict()
        # user -> refs answered by timeout, in order: their replies are dropped.
        self._late: dict[str, collections.OrderedDict[str, None]] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def expect(self, user: str, ref: str, now: float) -> None:
        """A message `ref` of `user` went to the authority: its reply is due by now+timeout."""
        key = (user, ref)
        self._waiting.pop(key, None)
        self._waiting[key] = now + self.timeout_s
        late = self._late.get(user)
        if late is not None:
            # An id used again: its new reply is not a late one.
            late.pop(ref, None)

    def answered(self, user: str, ref: str) -> bool:
        """A reply to `ref` is here: True to deliver it, False if the gateway already
        answered it (timed out), so that it is dropped."""
        if self._waiting.pop((user, ref), None) is not None:
            return True
        # Dropped if the gateway answered it already; a reply to a message not forwarded by
        # this gateway (answered on the authority's own node, or before this gateway started
        # tracking) is delivered as always.
        late = self._late.get(user)
        return late is None or ref not in late

    def due(self, now: float) -> list[tuple[str, str]]:
        """Messages whose reply is overdue: the caller answers them `unavailable`, straight
        to the connection; a reply from the authority after this is dropped."""
        out: list[tuple[str, str]] = []
        while self._waiting:
            key, deadline = next(iter(self._waiting.items()))
            if deadline > now:
                break
            del self._waiting[key]
            out.append(key)
            user, ref = key
            late = self._late.setdefault(user, collections.OrderedDict())
            late[ref] = None
            while len(late) > MAX_LATE_PER_USER:
                late.popitem(last=False)
        return out

    def forget(self, user: str) -> None:
        """`user`'s connection here is gone: replies go wherever they resume."""
        for key in [k for k in self._waiting if k[0] == user]:
            del self._waiting[key]
        self._late.pop(user, None)


__all__ = ["AwaitedReplies"]
