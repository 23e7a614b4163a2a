"""A frozen broker: the real server's process SIGSTOPped (its sockets stay open)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator

from helpers import wait_until
from lbwire.testing import LiftbridgeServer

__all__ = ["all_threads_stopped", "frozen"]


def all_threads_stopped(pid: int) -> bool:
    """Whether every thread of a process is stopped (Linux /proc state "T")."""
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] != "T":
                return False
    return True


@contextlib.asynccontextmanager
async def frozen(server: LiftbridgeServer) -> AsyncIterator[None]:
    """SIGSTOP the server's process (a hung broker: connections stay open); SIGCONT after."""
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        # The signal is delivered asynchronously: wait until every thread stopped.
        await wait_until(lambda: all_threads_stopped(pid), "the server is stopped")
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
