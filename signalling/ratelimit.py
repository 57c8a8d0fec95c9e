"""Token bucket for client message rates; time is passed in (monotonic seconds)."""

from __future__ import annotations


class TokenBucket:
    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._at = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; False means over the rate."""
        elapsed = now - self._at
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class WindowCounter:
    """Counts events within a sliding window of `window` seconds (bad frames)."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._times: list[float] = []

    def add(self, now: float) -> int:
        cutoff = now - self.window
        self._times = [t for t in self._times if t > cutoff]
        self._times.append(now)
        return len(self._times)
