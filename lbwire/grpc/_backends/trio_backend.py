"""trio's own means to park a call's task: rescheduling it is all a wake-up costs."""

from __future__ import annotations

import math
from typing import Any, Optional

import anyio.abc
import trio

from .base import Backend, Parking

__all__ = ["TrioBackend", "connect_trio"]


async def connect_trio(host: str, port: int) -> anyio.abc.SocketStream:
    """Open a plaintext TCP connection on trio, as an anyio socket stream.

    Not ``anyio.connect_tcp``: a cancellation that meets its winning attempt
    at the end of its task group drops the connected socket unclosed (left
    to the garbage collector). ``trio.open_tcp_stream`` closes every socket
    it opened unless it returns it.

    Raises:
        OSError: the connection could not be made.

    """
    stream = await trio.open_tcp_stream(host, port, happy_eyeballs_delay=0.25)
    # anyio's own stream over a trio socket (no public constructor for one
    # in the anyio releases we support); made without a checkpoint, so no
    # cancellation can come between the connect and its owner.
    from anyio._backends._trio import SocketStream

    return SocketStream(stream.socket)


class TrioParking(Parking):
    """The waiting task itself, parked with ``wait_task_rescheduled``."""

    __slots__ = ("_task",)

    def __init__(self) -> None:
        self._task: Optional[trio.lowlevel.Task] = None

    async def wait(self, deadline: float) -> None:
        self._task = trio.lowlevel.current_task()

        def abort(_: object) -> Any:
            self._task = None  # no reschedule for a task that stopped waiting
            return trio.lowlevel.Abort.SUCCEEDED

        if deadline == math.inf:
            await trio.lowlevel.wait_task_rescheduled(abort)
            return
        with trio.CancelScope(deadline=deadline):
            await trio.lowlevel.wait_task_rescheduled(abort)

    def wake(self) -> bool:
        task = self._task
        if task is None:
            return False
        self._task = None
        trio.lowlevel.reschedule(task)
        return True


class TrioBackend(Backend):
    """trio's clock and task parking."""

    __slots__ = ()

    def clock(self) -> float:
        """See :meth:`.base.Backend.clock`."""
        return float(trio.current_time())

    def parking(self) -> Parking:
        """See :meth:`.base.Backend.parking`."""
        return TrioParking()
