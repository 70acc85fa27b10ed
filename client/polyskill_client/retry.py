"""Retry with exponential backoff on UNAVAILABLE (server unreachable, restarting or draining).

Only UNAVAILABLE is retried: the server rejects those requests before a step is taken, so resending
is safe. Everything else (a bad observation, a lost session, a deadline) is raised at once.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_elapsed_s: float = 10.0
    """Give up (raise Unavailable) after retrying this long; 0 = never retry."""
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 1.0
    multiplier: float = 2.0
    jitter: float = 0.2
    """Each wait is scaled by a random factor in [1 - jitter, 1 + jitter] so that many clients of a
    restarted server do not all reconnect in the same instant."""

    def __post_init__(self) -> None:
        if self.max_elapsed_s < 0 or self.initial_backoff_s <= 0 or self.multiplier < 1:
            raise ValueError(f"invalid RetryPolicy {self}: need max_elapsed_s >= 0, "
                             "initial_backoff_s > 0, multiplier >= 1")

    def backoffs(self) -> Iterator[float]:
        """Successive waits (seconds); the caller stops when its elapsed budget is spent."""
        wait = self.initial_backoff_s
        while True:
            yield min(wait, self.max_backoff_s) * random.uniform(1 - self.jitter, 1 + self.jitter)
            wait *= self.multiplier


NO_RETRY = RetryPolicy(max_elapsed_s=0.0)
