"""The one resume loop's failure path: forward, reverse and activity subscriptions.

A resuming subscription reads messages in a loop of its own (the hot path,
which this module never sees) and, when its call ends in an error, hands the
error to `Resumption.failed`. That decides, for all three kinds alike:

- whether the error is final (`error.transient`, and the rule for a
  restarting server: "no such stream" is transient only for a subscription
  the server had confirmed and that is reconnecting after a transient
  failure);
- the time bounds: the set-up of a subscription never set up is bounded by
  its `timeout` (default: the retry policy's `max_time`) since it began; an
  outage, from its first failure, by `resubscribe_wait_time`;
- the pause before the next try: the retry policy's backoff, growing over an
  outage and starting over once the subscription delivers again;
- the report to the observer, once per outage (`on_resubscribe`);
- the metadata refresh, shared with every other subscription (single-flight,
  for a fetch that started after this failure), within the bound.

An outage ends when the subscription delivers again or the server confirms
it again: the loop passes its position (next offset) with each failure, so
nothing is done per message.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Optional

import anyio

from ._log import LazyLogger
from .error import ErrorDeadlineExceeded, ErrorNotFound, ErrorUnavailable, LiftbridgeError
from .retry import Backoff

if TYPE_CHECKING:
    from ._routing import Router
    from .observer import ObserverSlot
    from .retry import RetryPolicy

__all__ = ["Resumption", "fail_at"]

logger = LazyLogger("lbwire")


@contextmanager
def fail_at(deadline: float) -> Iterator[None]:
    """`anyio.fail_at`, which the anyio releases for Python 3.9 lack."""
    with anyio.CancelScope(deadline=deadline) as scope:
        yield
    if scope.cancelled_caught and anyio.current_time() >= deadline:
        raise TimeoutError


class Resumption:
    """The failures of one resuming subscription, from its start to its end.

    Args:
        router: For the metadata refresh before each new try.
        observers: Told of each outage (`on_resubscribe`).
        policy: The pauses between tries, and the default set-up bound.
        window: How long (s) an outage may last (`resubscribe_wait_time`).
        stream, partition: What is read (for messages and the observer).
        setup_timeout: Bound (s) of the first set-up (None: `policy.max_time`).
        kind: "Subscription", "Reverse subscription", ... (for messages).
    """

    __slots__ = (
        "_backoff",
        "_confirmed",
        "_first_deadline",
        "_observers",
        "_outage_deadline",
        "_position",
        "_reconnecting",
        "_router",
        "_window",
        "kind",
        "last_error",
        "partition",
        "set_up_once",
        "setup_bound",
        "stream",
        "where",
    )

    def __init__(
        self,
        router: Router,
        observers: ObserverSlot,
        policy: RetryPolicy,
        window: float,
        stream: str,
        partition: int,
        setup_timeout: Optional[float],
        kind: str = "Subscription",
    ) -> None:
        self._router = router
        self._observers = observers
        self._window = window
        self._backoff = Backoff(policy)
        self.stream = stream
        self.partition = partition
        self.kind = kind
        self.where = f"{stream!r}/{partition}"
        self.setup_bound = setup_timeout if setup_timeout is not None else policy.max_time
        self._first_deadline = anyio.current_time() + self.setup_bound
        self._outage_deadline: Optional[float] = None
        self._position: object = None
        # Whether the server ever confirmed the subscription, and whether it
        # is reconnecting after a transient failure (see `final`).
        self.set_up_once = False
        self._reconnecting = False
        # Whether the server confirmed the subscription since the last failure.
        self._confirmed = False
        self.last_error: Optional[LiftbridgeError] = None

    def setup_deadline(self) -> float:
        """When the set-up under way must have succeeded (an `anyio` time)."""
        if self.set_up_once and self._outage_deadline is not None:
            return self._outage_deadline
        return self._first_deadline

    def set_up(self) -> None:
        """The server confirmed the subscription (its handshake came)."""
        self.set_up_once = self._confirmed = True
        self._reconnecting = False

    def timed_out(self) -> LiftbridgeError:
        """What a set-up that ran out of time means (raise it if not `set_up_once`)."""
        if not self.set_up_once:
            if self.last_error is not None:
                # Retrying an unreachable broker ran out of time.
                return ErrorUnavailable(
                    f"{self.kind} to {self.where} not set up within {self.setup_bound} s: "
                    f"{self.last_error}"
                )
            return ErrorDeadlineExceeded(
                f"{self.kind} to {self.where} not set up within {self.setup_bound} s"
            )
        return ErrorUnavailable(f"No answer from the broker of {self.where}")

    def final(self, error: LiftbridgeError) -> bool:
        """Whether resuming cannot get past `error`.

        A restarted server accepts calls before it has loaded its streams, and
        meanwhile reports them missing. So a "no such stream" is transient for
        a subscription the server had confirmed and that is reconnecting after
        a transient failure (the broker went away); otherwise (a deletion ends
        an open call, or a first subscribe) it is final.
        """
        if isinstance(error, ErrorNotFound):
            return not (self.set_up_once and self._reconnecting)
        return not error.transient

    async def failed(self, error: LiftbridgeError, position: object) -> None:
        """Pause and refresh before the next try, or raise when resuming must stop.

        `position`: where the subscription stands (its next offset); a
        position unlike the last failure's starts a new outage.

        Raises:
            LiftbridgeError: `error` when it is final; ErrorUnavailable when
                the set-up or the outage ran out of time (ErrorNotFound when
                the stream stayed missing).
        """
        if self.final(error):
            raise error
        self.last_error = error
        interrupted = self.set_up_once and not self._reconnecting  # once per outage
        self._reconnecting = True
        now = anyio.current_time()
        if not self.set_up_once and now >= self._first_deadline:
            # Never set up: the set-up bound ends it, not the resume window.
            raise ErrorUnavailable(
                f"{self.kind} to {self.where} not set up within {self.setup_bound} s: {error}"
            ) from error
        if position != self._position:
            # It delivered since: a new outage, from the shortest pause.
            self._position = position
            self._outage_deadline = None
            self._backoff.reset()
        if self._outage_deadline is None or self._confirmed:
            # (A subscription confirmed again that fails without delivering,
            # an idle one, starts a new outage too, but its pauses go on
            # growing: a broker that accepts and drops it is not hammered.)
            self._outage_deadline = now + self._window
        self._confirmed = False
        if now >= self._outage_deadline:
            if isinstance(error, ErrorNotFound):
                raise error  # still missing after the wait: deleted meanwhile
            raise ErrorUnavailable(
                f"{self.kind} to {self.where} could not be resumed within {self._window} s: {error}"
            ) from error
        logger.info("%s to %s interrupted (%s); resuming", self.kind, self.where, error)
        observer = self._observers.current
        if observer is not None and interrupted:
            observer.on_resubscribe(self.stream, self.partition, error)
        # The pause and the refresh (a retry loop of its own) stay within
        # the bound that applies.
        with anyio.CancelScope(deadline=self.setup_deadline()):
            await self._backoff.wait()
            await self._router.refresh_quietly(since=now)
