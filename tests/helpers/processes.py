"""Find and end every process a test started, however deep it sits.

A Liftbridge server started by ``lbwire.testing`` runs in a session of its own
(a terminal's Ctrl-C is its parent's to pass on), so killing the process group
of a program that started one leaves the server running. What every
descendant keeps is its environment: a child started with :func:`marked_env`
passes the mark on to its own children, the server included, and
:func:`kill_marked` finds them all in ``/proc`` (Linux; elsewhere it finds
nothing). scripts/test.sh marks its whole run the same way (``MARK_ENV``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Dict, List, Mapping, Optional

__all__ = ["MARK_ENV", "kill_group_and_marked", "kill_marked", "marked_env", "marked_pids"]

#: The environment variable that marks the processes of one test (or run).
MARK_ENV = "LBWIRE_TEST_MARK"


def marked_env(env: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """``env`` (default: ours) with a new mark; read it back from ``[MARK_ENV]``."""
    marked = dict(os.environ if env is None else env)
    marked[MARK_ENV] = f"{os.getpid()}-{uuid.uuid4().hex}"
    return marked


def marked_pids(mark: str) -> List[int]:
    """The processes (other than this one) whose environment carries ``mark``."""
    wanted = f"{MARK_ENV}={mark}".encode()
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        if wanted in environ.split(b"\0") and int(entry.name) != os.getpid():
            pids.append(int(entry.name))
    return pids


def kill_marked(mark: str) -> List[int]:
    """SIGKILL every process carrying ``mark``; return their ids."""
    pids = marked_pids(mark)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def kill_group_and_marked(process: subprocess.Popen[bytes], mark: str) -> None:
    """End ``process`` (started with ``start_new_session=True``), its group, and
    every process carrying ``mark`` (a server it started, in its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    if process.poll() is None:
        process.kill()
    kill_marked(mark)
    process.wait()
