"""How the tests run the `lbwire` command: this interpreter, this tree first on the path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from helpers.processes import MARK_ENV, kill_group_and_marked, marked_env

REPO = Path(__file__).resolve().parents[2]

#: A hang guard for one command, not a timing claim.
COMMAND_TIMEOUT = 60.0


def command_env(brokers: Optional[str] = None) -> Dict[str, str]:
    """The environment the command runs in: this tree first on the path, a new mark."""
    env = marked_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("LBWIRE_BROKERS", None)
    if brokers is not None:
        env["LBWIRE_BROKERS"] = brokers
    return env


def lbwire_argv(*args: str) -> List[str]:
    """The command line that runs `lbwire ARGS...` with this interpreter."""
    return [sys.executable, "-m", "lbwire.cli", *args]


#: The mark of each command started, by process id.
_marks: Dict[int, str] = {}


def start_command(argv: List[str], env: Dict[str, str], **options: Any) -> subprocess.Popen[bytes]:
    """Start a command in a process group of its own (see :func:`end_command`)."""
    process = subprocess.Popen(argv, env=env, start_new_session=True, **options)
    _marks[process.pid] = env[MARK_ENV]  # command_env() marks it
    return process


def command_mark(process: subprocess.Popen[bytes]) -> str:
    """The mark a command started with :func:`start_command` passes on to its children."""
    return _marks[process.pid]


def end_command(process: subprocess.Popen[bytes]) -> None:
    """Kill a command still running, its process group and every process it started
    (a server of `lbwire dev` runs in a session of its own), and close its pipes."""
    mark = _marks.pop(process.pid, None)
    if mark is not None:  # else ended already
        kill_group_and_marked(process, mark)
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


def run_command(
    argv: List[str], env: Dict[str, str], *, input: Optional[bytes] = None
) -> subprocess.CompletedProcess[bytes]:
    """Run a command to its end; one that hangs past COMMAND_TIMEOUT is ended with
    everything it started, and the test fails."""
    process = start_command(
        argv,
        env,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = process.communicate(input, timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        end_command(process)
        raise AssertionError(
            f"{' '.join(argv)} still ran after {COMMAND_TIMEOUT} s: ended it and its servers"
        ) from None
    return subprocess.CompletedProcess(argv, process.returncode, out, err)
