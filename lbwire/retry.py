"""The one retry helper: bounded attempts, bounded time, jittered exponential backoff.

What is retried is decided by the exception's class (`LiftbridgeError.transient`),
not by lists of exception types at each call site.

One call, one budget: a public call may retry at several levels (a publish
retries, and each try refreshes metadata, which retries too). The outermost
`retrying` of a task opens the budget (its policy's attempts and max_time);
the loops nested in it draw on the same budget instead of opening their own,
so the policy bounds the whole public call.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Awaitable, Callable, Iterator, Optional, Tuple, Type, TypeVar

import anyio

from .error import LiftbridgeError

__all__ = ["RetryPolicy", "call_budget", "is_transient", "retrying"]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a failing call is tried again.

    Attributes:
        attempts: Tries in all, the first one included (at least 1).
        initial_backoff: Pause after the first failure, in seconds.
        max_backoff: Longest pause between two tries, in seconds.
        max_time: No new try starts after this many seconds since the first
            try of the public call (nested retries included).
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
    on_retry: Optional[Callable[[int, BaseException], None]] = None,
    failed: Optional[LiftbridgeError] = None,
) -> T:
    """Call `attempt(n)` (n = 0, 1, ...) until it succeeds or the policy gives up.

    A `LiftbridgeError` is retried when `retry_if` says so (by default: when
    it is transient); the last one is re-raised when attempts or time run out.
    `retry_on`, kept for callers of lbwire 0.1, retries exactly those classes
    instead. `on_retry(failures, error)` is told before each new try.
    `failed`: the caller made the first try itself, which failed with this
    error (a hot path keeps the retry machinery off its success path); it
    is handled as the first try's failure, and `attempt` starts at n = 1.
    """
    if retry_on is not None:
        classes = retry_on

        def retry_if(error: LiftbridgeError) -> bool:
            return isinstance(error, classes)

    with call_budget(policy) as budget:
        tries = 0
        while True:
            try:
                if failed is not None:
                    error, failed = failed, None
                    raise error
                return await attempt(tries)
            except LiftbridgeError as error:
                if not retry_if(error):
                    raise
                tries += 1
                budget.failures += 1
                pause = policy.backoff(budget.failures)
                if (
                    budget.failures >= budget.attempts
                    or anyio.current_time() + pause > budget.deadline
                ):
                    raise
                if on_retry is not None:
                    on_retry(budget.failures, error)
                await anyio.sleep(pause)


@contextmanager
def call_budget(policy: RetryPolicy) -> Iterator[_Budget]:
    """The retry budget of the public call under way, opened here if none is.

    Wrap a public call that runs several retrying steps one after the other
    (look a leader up, then call it) so that they share one budget.
    """
    budget = _budget.get()
    task = anyio.get_current_task().id
    if budget is not None and budget.task == task:
        yield budget
        return
    # The outermost call of this task (a task spawned inside a call
    # inherits the context, not the budget).
    budget = _Budget(task, anyio.current_time() + policy.max_time, policy.attempts)
    token = _budget.set(budget)
    try:
        yield budget
    finally:
        _budget.reset(token)


class _Budget:
    """What is left of one public call's retries (see the module docstring)."""

    __slots__ = ("attempts", "deadline", "failures", "task")

    def __init__(self, task: int, deadline: float, attempts: int) -> None:
        self.task = task
        self.deadline = deadline
        self.attempts = attempts
        self.failures = 0


_budget: ContextVar[Optional[_Budget]] = ContextVar("lbwire_retry_budget", default=None)
