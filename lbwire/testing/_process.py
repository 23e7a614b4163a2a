"""What servers and clusters share: ports, process bookkeeping, context management."""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import tempfile
import threading
import weakref
from pathlib import Path
from types import TracebackType
from typing import Optional, TypeVar

import anyio
import anyio.to_thread

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from lbwire.testing._config import LOOPBACK


class LiftbridgeStartError(RuntimeError):
    """A Liftbridge server exited or did not become ready in time.

    The message names the log file and ends with its last lines.
    """


# Ports handed out by `free_ports` are reserved until `release_ports`: each
# holds an exclusive flock on a file named after it, which other processes'
# `free_ports` respect. A killed server's port is free in the kernel's eyes,
# and another test process's new server took one once (a test that meant to
# meet a dead port met a live server). The kernel drops the locks of a
# process that dies.
_PORT_LOCKS = Path(tempfile.gettempdir()) / "lbwire-ports"
_held: dict[int, int] = {}  # port -> the descriptor holding its lock
_held_lock = threading.Lock()


def _reserve(port: int) -> bool:
    """Take `port`'s lock; False if another holder has it."""
    if fcntl is None:
        return True  # no flock (Windows): ports are only probed
    try:
        _PORT_LOCKS.mkdir(mode=0o777, exist_ok=True)
        fd = os.open(_PORT_LOCKS / str(port), os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        return True  # an unusable directory must not stop the tests
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    with _held_lock:
        _held[port] = fd
    return True


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct ports free on 127.0.0.1 right now, reserved.

    No other process's `free_ports` returns them until `release_ports`
    (or this process's exit).
    """
    ports: list[int] = []
    sockets = []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)  # held open: the kernel hands out each once
            sock.bind((LOOPBACK, 0))
            port = sock.getsockname()[1]
            if _reserve(port):
                ports.append(port)
        return ports
    finally:
        for sock in sockets:
            sock.close()


def release_ports(*ports: int) -> None:
    """End the reservations `free_ports` made for ``ports`` (others are ignored)."""
    for port in ports:
        with _held_lock:
            fd = _held.pop(port, None)
        if fd is not None:
            os.close(fd)  # closing drops the lock


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
