"""`Turns`: a lock for the writers of one stream, cheap when nobody waits.

`anyio.Lock` asks the event loop for the current task on every acquire and
release (to check ownership), and every publish takes its stream's lock. Here
taking a free turn sets a flag, and a turn is handed straight to the first
waiter on release (first come, first served: a writer cannot be overtaken
forever). See benchmarks/README.md for what it saves.
"""

from __future__ import annotations

from collections import deque
from types import TracebackType
from typing import Deque, Optional, Type

import anyio

__all__ = ["Turns"]


class Turns:
    """Mutual exclusion for tasks of one event loop, without owner checks."""

    __slots__ = ("_taken", "_waiters")

    def __init__(self) -> None:
        self._taken = False
        self._waiters: Deque[anyio.Event] = deque()

    @property
    def taken(self) -> bool:
        """Whether some task holds the turn."""
        return self._taken

    def try_take(self) -> bool:
        """Take the turn if it is free and nobody waits for it; whether it was taken."""
        if self._taken or self._waiters:
            return False
        self._taken = True
        return True

    async def take(self) -> None:
        """Wait for the turn (cancellable: a cancelled waiter holds nothing)."""
        if self.try_take():
            return
        event = anyio.Event()
        self._waiters.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():
                # Handed the turn while being cancelled: pass it on.
                self.give_back()
            else:
                self._waiters.remove(event)
            raise

    def give_back(self) -> None:
        """End the caller's turn: the first waiter's begins."""
        if self._waiters:
            self._waiters.popleft().set()  # still taken: it is the waiter's now
        else:
            self._taken = False

    async def __aenter__(self) -> None:
        await self.take()

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.give_back()
