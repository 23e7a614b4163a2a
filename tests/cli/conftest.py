"""Run the `lbwire` command in a subprocess, as a shell user would, against the real server."""

from __future__ import annotations

import subprocess
from typing import Any, Callable, Iterator, List, Optional, Union

import pytest
from cli_support import command_env, end_command, lbwire_argv, run_command, start_command

from lbwire.testing import LiftbridgeServer

Run = Callable[..., "subprocess.CompletedProcess[bytes]"]


@pytest.fixture
def lbwire(liftbridge_server: LiftbridgeServer) -> Run:
    """`lbwire(*args, input=b"...")`: run the command against the session's server."""

    def run(
        *args: str, input: Union[bytes, str, None] = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        data = input.encode() if isinstance(input, str) else input
        done = run_command(lbwire_argv(*args), command_env(liftbridge_server.broker), input=data)
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
        process = start_command(
            lbwire_argv(*args),
            command_env(liftbridge_server.broker if brokers is None else brokers),
            **options,
        )
        started.append(process)
        return process

    yield popen
    for process in started:
        end_command(process)
