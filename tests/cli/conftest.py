"""Run the `lbwire` command in a subprocess, as a shell user would, against the real server."""

from __future__ import annotations

import subprocess
from typing import Any, Callable, Iterator, List, Optional, Union

import pytest
from cli_support import COMMAND_TIMEOUT, command_env, lbwire_argv

from lbwire.testing import LiftbridgeServer

Run = Callable[..., "subprocess.CompletedProcess[bytes]"]


@pytest.fixture
def lbwire(liftbridge_server: LiftbridgeServer) -> Run:
    """`lbwire(*args, input=b"...")`: run the command against the session's server."""

    def run(
        *args: str, input: Union[bytes, str, None] = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        data = input.encode() if isinstance(input, str) else input
        done = subprocess.run(
            lbwire_argv(*args),
            input=data,
            stdin=None if data is not None else subprocess.DEVNULL,
            capture_output=True,
            env=command_env(liftbridge_server.broker),
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"lbwire {' '.join(args)} exited {done.returncode}:\n"
                f"{done.stderr.decode(errors='replace')}"
            )
        return done

    return run


@pytest.fixture
def lbwire_popen(
    liftbridge_server: LiftbridgeServer,
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """`lbwire_popen(*args, brokers=...)`: start the command without waiting for it."""
    started: List[subprocess.Popen[bytes]] = []

    def popen(*args: str, brokers: Optional[str] = None, **options: Any) -> subprocess.Popen[bytes]:
        options.setdefault("stdin", subprocess.DEVNULL)
        options.setdefault("stdout", subprocess.PIPE)
        options.setdefault("stderr", subprocess.PIPE)
        process: subprocess.Popen[bytes] = subprocess.Popen(
            lbwire_argv(*args),
            env=command_env(liftbridge_server.broker if brokers is None else brokers),
            **options,
        )
        started.append(process)
        return process

    yield popen
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
