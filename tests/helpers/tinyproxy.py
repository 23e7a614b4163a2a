"""A real HTTP proxy for the tests: Debian's tinyproxy on a loopback port, configured per test.

tinyproxy's packaged configuration lets CONNECT reach ports 443 and 563 only;
the one written here allows every port, or the ports given, and asks for
credentials when given some. The proxy's log (level Connect) records each
CONNECT request, so a test can tell which connections went through it.

tinyproxy is a test requirement, as the Liftbridge servers are: without it
the fixture fails with how to install it (scripts/test.sh installs it).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

__all__ = ["Tinyproxy", "tinyproxy"]

#: How long tinyproxy may take to listen: a guard against hangs, not a speed expectation.
START_GUARD = 30.0
_CONNECT_LINE = re.compile(r"Request \(file descriptor \d+\): CONNECT (\S+) HTTP/")


def binary() -> str:
    """The tinyproxy program; fails the test with how to install it when missing."""
    found = shutil.which("tinyproxy") or (
        "/usr/bin/tinyproxy" if Path("/usr/bin/tinyproxy").exists() else None
    )
    if found is None:
        import pytest

        pytest.fail(
            "tinyproxy is not installed: the proxy tests run through a real proxy. "
            "Install it (Debian/Ubuntu: apt-get install tinyproxy); scripts/test.sh does.",
            pytrace=False,
        )
    return found


class Tinyproxy:
    """A tinyproxy process listening on 127.0.0.1:``port``."""

    def __init__(
        self,
        directory: Path,
        *,
        credentials: Optional[Tuple[str, str]] = None,
        connect_ports: Sequence[int] = (),
    ) -> None:
        self.directory = directory
        self.credentials = credentials
        self.connect_ports = tuple(connect_ports)
        self.port = 0
        self.log_path = directory / "tinyproxy.log"
        self._process: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        """``http://[user:password@]127.0.0.1:port``."""
        if self.credentials is None:
            return f"http://127.0.0.1:{self.port}"
        user, password = self.credentials
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    def url_with(self, user: str, password: str) -> str:
        """The proxy's URL with other credentials."""
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    def connect_requests(self) -> List[str]:
        """The targets (``host:port``) of the CONNECT requests the proxy received so far."""
        if not self.log_path.exists():
            return []
        return _CONNECT_LINE.findall(self.log_path.read_text(errors="replace"))

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def start(self) -> None:
        program = binary()
        # A free port may be taken by someone else before tinyproxy binds it:
        # then it exits, and the next attempt takes another port.
        for _ in range(5):
            self.port = _free_port()
            config = self.directory / "tinyproxy.conf"
            config.write_text(self._config())
            self.log_path.write_text("")
            self._process = subprocess.Popen(
                [program, "-d", "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_listening():
                return
            self.stop()
        raise RuntimeError(f"tinyproxy did not start; its log:\n{self.log_tail()}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _config(self) -> str:
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Timeout 600",
            f'LogFile "{self.log_path}"',
            # Connect: every CONNECT request is logged (connect_requests()).
            "LogLevel Connect",
            "MaxClients 100",
            "Allow 127.0.0.1",
            # Without ConnectPort lines tinyproxy tunnels to every port.
            *(f"ConnectPort {port}" for port in self.connect_ports),
        ]
        if self.credentials is not None:
            lines.append("BasicAuth {} {}".format(*self.credentials))
        return "\n".join(lines) + "\n"

    def _wait_listening(self) -> bool:
        deadline = time.monotonic() + START_GUARD
        process = self._process
        assert process is not None
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            time.sleep(0.02)
        return False


@contextlib.contextmanager
def tinyproxy(
    directory: Path,
    *,
    credentials: Optional[Tuple[str, str]] = None,
    connect_ports: Sequence[int] = (),
) -> Iterator[Tinyproxy]:
    """A running tinyproxy (see :class:`Tinyproxy`), stopped on exit."""
    proxy = Tinyproxy(directory, credentials=credentials, connect_ports=connect_ports)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
