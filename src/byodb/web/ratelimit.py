"""A small in-process sliding-window rate limiter (per user, per action)."""

from __future__ import annotations

import time
from collections import defaultdict, deque

from byodb.errors import RateLimited


class RateLimiter:
    def __init__(self, per_minute: int):
        self._limit = per_minute
        self._hits: dict[str, deque[float]] = defaultdict(deque)

    def hit(self, key: str) -> None:
        now = time.monotonic()
        window = self._hits[key]
        while window and now - window[0] > 60:
            window.popleft()
        if len(window) >= self._limit:
            raise RateLimited("too many connection tests; wait a minute and try again")
        window.append(now)
