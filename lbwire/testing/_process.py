"""What servers and clusters share: ports, process bookkeeping, context management."""

from __future__ import annotations

import atexit
import socket
import subprocess
import weakref
from types import TracebackType
from typing import Optional, TypeVar

import anyio
import anyio.to_thread

from lbwire.testing._config import LOOPBACK


class LiftbridgeStartError(RuntimeError):
    """A Liftbridge server exited or did not become ready in time.

    The message names the log file and ends with its last lines.
    """


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct ports free on 127.0.0.1 right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def check_port_free(port: int) -> None:
    """Raise LiftbridgeStartError if something listens on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the server's own listener: TIME_WAIT leftovers do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            raise LiftbridgeStartError(
                f"cannot start Liftbridge on {LOOPBACK}:{port}: the port is in use "
                f"by another process ({exc.strerror}); stop it or pick another port"
            ) from None


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


# Processes still running at interpreter exit are killed so none outlives it.
live_processes: weakref.WeakSet[subprocess.Popen[bytes]] = weakref.WeakSet()


def _kill_leftovers() -> None:
    for process in list(live_processes):
        if process.poll() is None:
            process.kill()


atexit.register(_kill_leftovers)


class Managed:
    """Sync and async context management for servers and clusters.

    Entering starts (and closes again if the start fails, keeping the logs
    the error points at); leaving closes. The async forms run the blocking
    work in a worker thread, shielded: a cancelled test must not leave
    processes behind.
    """

    def start(self) -> None:
        """Start and wait until ready."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop and delete the data."""
        raise NotImplementedError

    def keep_logs(self) -> None:
        """Keep log and config files on :meth:`close` (data is deleted)."""
        raise NotImplementedError

    def _start_or_close(self) -> None:
        try:
            self.start()
        except BaseException:
            self.keep_logs()
            self.close()
            raise

    def __enter__(self: _M) -> _M:
        self._start_or_close()
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    async def __aenter__(self: _M) -> _M:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._start_or_close)
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.close)


_M = TypeVar("_M", bound=Managed)
