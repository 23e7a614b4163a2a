"""SIGTERM or SIGINT to a test session ends it, and leaves no Liftbridge server behind.

Each test runs a small pytest session in a child process, with this suite's
fixtures (tests/conftest.py as a plugin), whose one test starts the session's
server and then waits for the signal; the signal goes to pytest alone (as
`kill` or a CI timeout sends it), with and without pytest-xdist workers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import HANG_GUARD
from helpers.processes import MARK_ENV, kill_marked, marked_env, marked_pids

pytestmark = pytest.mark.one_interpreter

REPO = Path(__file__).resolve().parents[1]

SESSION = """
import os
import time
from pathlib import Path


def test_waits_for_the_signal(liftbridge_server):
    Path(os.environ["READY_FILE"]).write_text(str(liftbridge_server.pid))
    time.sleep({wait})  # the signal ends it
"""


#: A hang guard for the child session's steps: a pytest session on PyPy starting
#: up, or ending, on a loaded machine took longer than HANG_GUARD.
SESSION_GUARD = HANG_GUARD * 4


def wait_for(condition, what: str) -> None:
    """Poll `condition` until it holds (nothing announces another process's state)."""
    deadline = time.monotonic() + SESSION_GUARD
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {SESSION_GUARD} s: {what}"
        time.sleep(0.05)


@pytest.mark.server
@pytest.mark.parametrize("workers", [0, 2], ids=["one-process", "xdist"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_ends_the_session_and_its_servers(
    tmp_path: Path, signum: signal.Signals, workers: int
) -> None:
    test_file = tmp_path / "test_session.py"
    test_file.write_text(SESSION.format(wait=SESSION_GUARD * 2))
    ready = tmp_path / "ready"
    env = marked_env()
    env["READY_FILE"] = str(ready)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO / "tests"), str(REPO), env.get("PYTHONPATH")])
    )
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest"]
    argv += ["-c", str(REPO / "pyproject.toml"), "--rootdir", str(tmp_path)]
    argv += ["-n", str(workers)] if workers else []
    session = subprocess.Popen(
        [*argv, str(test_file)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # a signal to this test's process group misses it
    )
    try:
        wait_for(lambda: ready.exists() and ready.read_text(), "the session's server is up")
        server = int(ready.read_text())
        assert server in marked_pids(env[MARK_ENV])
        session.send_signal(signum)
        out, _ = session.communicate(timeout=SESSION_GUARD)
        assert session.returncode not in (0, None), out.decode(errors="replace")
        assert b"KeyboardInterrupt" in out
        wait_for(lambda: not marked_pids(env[MARK_ENV]), "no process of the session is left")
    finally:
        if session.poll() is None:
            os.killpg(session.pid, signal.SIGKILL)
        kill_marked(env[MARK_ENV])
        session.communicate()
