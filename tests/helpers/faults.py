"""Freezing a real server: SIGSTOP keeps its sockets open and answers nothing.

Import as ``from helpers.faults import frozen``.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator

from helpers import wait_until
from lbwire.testing import LiftbridgeServer


def all_threads_stopped(pid: int) -> bool:
    """Whether every thread of process `pid` is stopped (state T in /proc)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] != "T":
                return False
    return True


@contextlib.asynccontextmanager
async def frozen(server: LiftbridgeServer) -> AsyncIterator[None]:
    """SIGSTOP the server's process (a hung broker: connections stay open); SIGCONT after.

    The signal is delivered asynchronously: the block begins once every
    thread of the process has stopped.
    """
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        await wait_until(lambda: all_threads_stopped(pid), "the server is stopped")
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
