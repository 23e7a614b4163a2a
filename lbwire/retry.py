"""The one retry helper: bounded attempts, bounded time, jittered exponential backoff.

What is retried is decided by the exception's class (`LiftbridgeError.transient`),
not by lists of exception types at each call site.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Awaitable, Callable, Optional, Tuple, Type, TypeVar

import anyio

from .error import LiftbridgeError

__all__ = ["RetryPolicy", "is_transient", "retrying"]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a failing call is tried again.

    Attributes:
        attempts: Tries in all, the first one included (at least 1).
        initial_backoff: Pause after the first failure, in seconds.
        max_backoff: Longest pause between two tries, in seconds.
        max_time: No new try starts after this many seconds since the first.
    """

    attempts: int = 10
    initial_backoff: float = 0.05
    max_backoff: float = 2.0
    max_time: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be at least 1, not {self.attempts}")
        if self.initial_backoff < 0 or self.max_backoff < self.initial_backoff:
            raise ValueError(
                "RetryPolicy backoffs must satisfy 0 <= initial_backoff <= max_backoff"
            )
        if self.max_time <= 0:
            raise ValueError(f"RetryPolicy.max_time must be positive, not {self.max_time}")

    def backoff(self, failures: int) -> float:
        """Pause before the next try after `failures` failed ones (full jitter)."""
        ceiling: float = min(self.max_backoff, self.initial_backoff * (2 ** (failures - 1)))
        return ceiling / 2 + random.random() * ceiling / 2


def is_transient(error: LiftbridgeError) -> bool:
    """Whether trying the failed call again may succeed (the class says so)."""
    return error.transient


async def retrying(
    attempt: Callable[[int], Awaitable[T]],
    policy: RetryPolicy,
    retry_on: Optional[Tuple[Type[LiftbridgeError], ...]] = None,
    *,
    retry_if: Callable[[LiftbridgeError], bool] = is_transient,
) -> T:
    """Call `attempt(n)` (n = 0, 1, ...) until it succeeds or the policy gives up.

    A `LiftbridgeError` is retried when `retry_if` says so (by default: when
    it is transient); the last one is re-raised when attempts or time run out.
    `retry_on`, kept for callers of lbwire 0.1, retries exactly those classes
    instead.
    """
    if retry_on is not None:
        classes = retry_on

        def retry_if(error: LiftbridgeError) -> bool:
            return isinstance(error, classes)

    deadline = anyio.current_time() + policy.max_time
    failures = 0
    while True:
        try:
            return await attempt(failures)
        except LiftbridgeError as error:
            if not retry_if(error):
                raise
            failures += 1
            pause = policy.backoff(failures)
            if failures >= policy.attempts or anyio.current_time() + pause > deadline:
                raise
            await anyio.sleep(pause)
