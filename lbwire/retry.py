"""The retry engine: bounded attempts, bounded time, jittered exponential backoff.

`RetryPolicy` decides every pause and bound; `Backoff` paces one loop with it
(unary calls through `retrying`, the waits, the cursor store, the consumer,
and the subscriptions' resume loop in `lbwire._resume`).

What is retried is decided by the exception's class (`LiftbridgeError.transient`),
not by lists of exception types at each call site.

One call, one budget: a public call may retry at several levels (a publish
retries, and each try refreshes metadata, which retries too). The outermost
`retrying` of a task opens the budget (its policy's attempts and max_time);
the loops nested in it draw on the same budget instead of opening their own,
so the policy bounds the whole public call.
"""

from __future__ import annotations

import math
import random
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Awaitable, Callable, Iterator, Optional, Tuple, Type, TypeVar

import anyio

from .error import LiftbridgeError

__all__ = [
    "POLICY_BOUND",
    "Backoff",
    "RetryPolicy",
    "call_budget",
    "is_transient",
    "retrying",
    "wait_bound",
]

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


class _PolicyBound:
    """The default `timeout` of a wait: the retry policy's `max_time`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "POLICY_BOUND"


#: The default `timeout=` of the waits gufo-liftbridge leaves unbounded
#: (`create_stream`, `wait_for_stream`): the client's `RetryPolicy.max_time`.
#: An explicit `timeout=None` waits on.
POLICY_BOUND: float = _PolicyBound()  # type: ignore[assignment]


def wait_bound(timeout: Optional[float], policy: RetryPolicy) -> Optional[float]:
    """A wait's bound in seconds (None: unbounded) from its `timeout=` argument."""
    if timeout is POLICY_BOUND:
        return policy.max_time
    return timeout


class Backoff:
    """The pauses of one retry loop: growing with jitter, ending at a deadline.

    Args:
        policy: The pauses (`RetryPolicy.backoff`).
        deadline: No pause ends after it (`anyio.current_time()` scale).
        pause: Pause after n failures, instead of the policy's.
    """

    __slots__ = ("_pause", "deadline", "failures", "policy")

    def __init__(
        self,
        policy: RetryPolicy,
        deadline: float = math.inf,
        pause: Optional[Callable[[int], float]] = None,
    ) -> None:
        self.policy = policy
        self.deadline = deadline
        self.failures = 0
        self._pause = pause or policy.backoff

    def reset(self) -> None:
        """The loop made progress: the next pause is the shortest again."""
        self.failures = 0

    def next_pause(self, cap: float = math.inf) -> Optional[float]:
        """Count a failure; the pause before the next try (None: past the deadline)."""
        self.failures += 1
        pause = min(self._pause(self.failures), cap)
        if anyio.current_time() + pause > self.deadline:
            return None
        return pause

    async def wait(self, cap: float = math.inf) -> bool:
        """Count a failure and pause; False (at once) if the deadline would pass."""
        pause = self.next_pause(cap)
        if pause is None:
            return False
        await anyio.sleep(pause)
        return True


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
    pause: Optional[Callable[[int], float]] = None,
) -> T:
    """Call `attempt(n)` (n = 0, 1, ...) until it succeeds or the policy gives up.

    A `LiftbridgeError` is retried when `retry_if` says so (by default: when
    it is transient); the last one is re-raised when attempts or time run out.
    `retry_on`, kept for callers of lbwire 0.1, retries exactly those classes
    instead. `on_retry(failures, error)` is told before each new try.
    `failed`: the caller made the first try itself, which failed with this
    error (a hot path keeps the retry machinery off its success path); it
    is handled as the first try's failure, and `attempt` starts at n = 1.
    `pause(failures)`: the pause between tries, instead of the policy's.
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
                wait = (pause or policy.backoff)(budget.failures)
                if (
                    budget.failures >= budget.attempts
                    or anyio.current_time() + wait > budget.deadline
                ):
                    raise
                if on_retry is not None:
                    on_retry(budget.failures, error)
                await anyio.sleep(wait)


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
