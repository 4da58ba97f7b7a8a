"""A sliding-window rate limiter, in memory, per process.

Anonymous report submissions are limited per client address: at most ``limit`` accepted
submissions in any ``window`` seconds. The window slides (a log of accepted times per client),
so there is no burst at a fixed boundary. The state lives in this process only: a deployment
with several worker processes allows ``limit`` per worker, which the documentation states.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from urbansec.errors import RateLimitedError, UsageError


class SlidingWindowLimiter:
    """At most ``limit`` hits per ``window`` seconds per key; thread-safe.

    ``clock`` returns seconds (monotonic by default; tests pass a fake one).
    """

    def __init__(self, limit: int, window: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or not (window > 0):
            raise UsageError(f"a rate limit needs limit >= 1 and a window > 0 seconds, not "
                             f"{limit} per {window}")
        self.limit = limit
        self.window = float(window)
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._last_sweep = clock()

    def check(self, key: str) -> float:
        """Seconds until ``key`` may be let through again (0.0: now). Records nothing."""
        with self._lock:
            return self._wait(key, self.clock())

    def hit(self, key: str) -> None:
        """Let ``key`` through and record it, or raise ``RateLimitedError`` (retry_after in
        whole seconds, at least 1)."""
        with self._lock:
            now = self.clock()
            wait = self._wait(key, now)
            if wait > 0:
                retry = max(1, math.ceil(wait))
                raise RateLimitedError(
                    f"too many submissions from this client: at most {self.limit} per "
                    f"{self.window:g} s; try again in {retry} s",
                    details={"retry_after": retry, "limit": self.limit,
                             "window_seconds": self.window})
            self._hits.setdefault(key, deque()).append(now)
            self._sweep(now)

    def record(self, key: str) -> None:
        """Record a hit for ``key`` whatever its count (failures are counted even when the
        caller already refuses more)."""
        with self._lock:
            now = self.clock()
            self._hits.setdefault(key, deque()).append(now)
            self._sweep(now)

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()

    def _wait(self, key: str, now: float) -> float:
        hits = self._hits.get(key)
        if not hits:
            return 0.0
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) < self.limit:
            return 0.0
        return hits[0] + self.window - now

    def _sweep(self, now: float) -> None:
        # forget idle clients now and then, so memory stays bounded by the active ones
        if now - self._last_sweep < self.window:
            return
        self._last_sweep = now
        stale = [k for k, hits in self._hits.items() if not hits or hits[-1] <= now - self.window]
        for k in stale:
            del self._hits[k]


_LIMITERS: dict[tuple[str, int, float], SlidingWindowLimiter] = {}
_REGISTRY_LOCK = threading.Lock()


def limiter_for(scope: str, limit: int, window: float) -> SlidingWindowLimiter:
    """The process-wide limiter for ``scope`` (e.g. a database URL) and these settings."""
    key = (scope, int(limit), float(window))
    with _REGISTRY_LOCK:
        limiter = _LIMITERS.get(key)
        if limiter is None:
            limiter = _LIMITERS[key] = SlidingWindowLimiter(int(limit), float(window))
        return limiter


def reset_all() -> None:
    """Forget every client's history (tests; an operator after a false alarm)."""
    with _REGISTRY_LOCK:
        for limiter in _LIMITERS.values():
            limiter.reset()
