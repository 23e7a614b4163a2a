"""`PublishRoom`: the bound on one client's publishes in flight, in requests and in bytes.

A publish takes room before it is sent and gives it back when it is settled
(its ack, its refusal, its ack timeout or the end of its stream), not when
someone awaits it: a caller that never awaits its acks is bounded too.
Callers that find no room wait in line, first come first served, so a large
message is not overtaken forever by small ones. A message larger than the
byte bound is let through alone, when nothing else is in flight.
"""

from __future__ import annotations

from collections import deque
from typing import Deque, NamedTuple, Optional

import anyio

from .error import ErrorDeadlineExceeded

__all__ = ["InFlight", "PublishRoom"]


class InFlight(NamedTuple):
    """A client's publishes in flight (sent or about to be, not settled yet)."""

    #: How many.
    requests: int
    #: Their encoded size, in bytes.
    bytes: int


class _Waiter:
    __slots__ = ("epoch", "event", "granted", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.granted = False
        self.epoch = 0
        self.event = anyio.Event()


class PublishRoom:
    """Room for at most `max_requests` publishes and `max_bytes` bytes in flight.

    Each taken room is tagged with the flush epoch it was taken in, so that
    `flush` waits for the publishes in flight when it began, not for those
    sent after (under a steady stream of publishes it would never return).
    """

    __slots__ = (
        "_drained",
        "_waiters",
        "bytes",
        "epoch",
        "max_bytes",
        "max_requests",
        "older",
        "requests",
    )

    def __init__(self, max_requests: int, max_bytes: int) -> None:
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.requests = 0
        self.bytes = 0
        #: Bumped by each flush; a settled publish says which epoch it took room in.
        self.epoch = 0
        #: Publishes in flight that took room before the latest flush began.
        self.older = 0
        self._waiters: Deque[_Waiter] = deque()
        # Made only while someone flushes: set when `older` reaches 0.
        self._drained: Optional[anyio.Event] = None

    def _fits(self, size: int) -> bool:
        return self.requests < self.max_requests and (
            self.bytes + size <= self.max_bytes or self.bytes == 0
        )

    def try_take(self, size: int) -> bool:
        """Take room for a request of `size` bytes if there is some and nobody waits.

        The room is taken in the current `epoch` (for `give`).
        """
        if self._waiters or not self._fits(size):
            return False
        self.requests += 1
        self.bytes += size
        return True

    async def take(self, size: int, deadline: float, what: str) -> int:
        """Wait for room for a request of `size` bytes until `deadline` (anyio's clock).

        Returns the epoch the room was taken in (for `give`). Cancelled or
        timed out, it leaves nothing taken and nobody in line.

        Raises:
            ErrorDeadlineExceeded: No room came by `deadline` (`not_processed`:
                the request was not sent).
        """
        if self.try_take(size):
            return self.epoch
        waiter = _Waiter(size)
        self._waiters.append(waiter)
        try:
            with anyio.move_on_after(deadline - anyio.current_time()):
                await waiter.event.wait()
        except BaseException:
            self._leave(waiter)
            raise
        if not waiter.granted:
            self._leave(waiter)
            raise ErrorDeadlineExceeded(
                f"No room for {what} in time: {self.requests} publishes "
                f"({self.bytes} bytes) were in flight, the bound is {self.max_requests} "
                f"({self.max_bytes} bytes); the message was not sent",
                not_processed=True,
            )
        return waiter.epoch

    def _leave(self, waiter: _Waiter) -> None:
        """`waiter` gives up: out of the line, or its room back if it was granted."""
        if waiter.granted:
            self.give(waiter.size, waiter.epoch)
        else:
            self._waiters.remove(waiter)
            # A large request at the head may have held smaller ones back.
            self._grant()

    def give(self, size: int, epoch: int) -> None:
        """A request of `size` bytes, taken in `epoch`, was settled: its room goes on."""
        self.requests -= 1
        self.bytes -= size
        if epoch != self.epoch:
            self.older -= 1
            if not self.older and self._drained is not None:
                self._drained.set()
                self._drained = None
        if self._waiters:
            self._grant()

    def _grant(self) -> None:
        waiters = self._waiters
        while waiters and self._fits(waiters[0].size):
            waiter = waiters.popleft()
            self.requests += 1
            self.bytes += waiter.size
            waiter.granted = True
            waiter.epoch = self.epoch
            waiter.event.set()

    def snapshot(self) -> InFlight:
        """The publishes in flight now."""
        return InFlight(self.requests, self.bytes)

    @property
    def waiting(self) -> int:
        """How many callers wait for room."""
        return len(self._waiters)

    async def drain(self) -> None:
        """Wait until every publish in flight now is settled (not those taken later)."""
        # Everything in flight becomes "older"; what is taken from now on
        # carries the new epoch.
        self.epoch += 1
        self.older = self.requests
        while self.older:
            event = self._drained
            if event is None:
                event = self._drained = anyio.Event()
            await event.wait()
