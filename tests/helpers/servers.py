"""The real Liftbridge servers the suite runs against.

The suite runs against one server generation at a time: the pinned v1.9.0 or
the newest (``LBWIRE_SERVER=newest``, see ``lbwire.testing``). A test whose
outcome depends on the generation states what each one does, with
``by_generation``, so that every run asserts the behaviour of its server and
none is skipped:

    expected = by_generation(liftbridge_server, v1_9_0=ErrorNotFound, newest=ErrorUnavailable)
"""

from __future__ import annotations

import contextlib
import fcntl
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar, Union

from lbwire.testing import LIFTBRIDGE_VERSION, NEWEST, LiftbridgeCluster, LiftbridgeServer

__all__ = [
    "LIFTBRIDGE_VERSION",
    "NEWEST",
    "SERVER_FIXTURES",
    "by_generation",
    "generation",
    "port_taken_by_us",
]

#: Fixtures that start a real server (or cluster), wherever they are defined:
#: tests/conftest.py marks every test that uses one, directly or through
#: another fixture, ``server``. A test that starts a server without being
#: marked fails (tests/conftest.py sets ``LBWIRE_NO_SERVER`` for it).
SERVER_FIXTURES = frozenset(
    {
        "liftbridge_server",
        "fresh_server",
        "server_generation",
        "generation_server",
        # tests/cluster
        "shared_cluster",
        "fresh_cluster",
        "group_cluster",
        # tests/client
        "group_server",
        "cursor_server",
        "encrypting_server",
        # tests/tls, tests/cli, tests/activity, tests/compat
        "tls_server",
        "mtls_server",
        "authz_server",
        "activity_server",
        "server",
    }
)

_T = TypeVar("_T")


def generation(server: Union[LiftbridgeServer, LiftbridgeCluster]) -> str:
    """``"v1.9.0"`` or ``"newest"``: what the (started) server's binary reports."""
    node = server.nodes[0] if isinstance(server, LiftbridgeCluster) else server
    return node.generation


def by_generation(
    server: Union[LiftbridgeServer, LiftbridgeCluster], *, v1_9_0: _T, newest: _T
) -> _T:
    """Pick what a server-specific test expects from this server's generation."""
    return newest if generation(server) == NEWEST else v1_9_0


@contextlib.contextmanager
def port_taken_by_us(port: int, timeout: float = 900.0) -> Iterator[None]:
    """Hold a machine-wide lock on a fixed port for the block.

    Test runs side by side (scripts/test.sh's passes, xdist workers) would
    otherwise start servers on a port that a program hard-codes at the same
    time; the block waits until no other holds it (a hang guard, not a timing
    claim: the other holder is a test of a few seconds).
    """
    path = Path(tempfile.gettempdir()) / f"lbwire-test-port-{port}.lock"
    with open(path, "a") as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path} stayed locked for {timeout} s") from None
                time.sleep(0.1)  # the holder announces nothing
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
