"""`lbwire dev`: a throwaway Liftbridge server on loopback, for development."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any, List, Optional

from .common import EXIT_USAGE, CommandError, formatter

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add `dev` to the `lbwire` parser."""
    dev = commands.add_parser(
        "dev",
        help="run a throwaway Liftbridge server on 127.0.0.1 until Ctrl-C",
        description="Run a throwaway Liftbridge server (NATS embedded) on 127.0.0.1 "
        "until Ctrl-C or SIGTERM; its data is deleted when it stops.",
        epilog="""\
The first run builds the Liftbridge server with Go into lbwire's cache
(`python -m lbwire.testing --install` does only that); $LIFTBRIDGE_BIN or a
`liftbridge` on PATH is used instead when there is one. The server has
cursors enabled and listens on loopback only.

examples:
  lbwire dev                    # 127.0.0.1:9292, the default of every command
  lbwire dev --port 0           # a free port; then export the printed line
  lbwire dev --streams orders,refunds
""",
        formatter_class=formatter(),
    )
    dev.add_argument(
        "--port",
        type=int,
        default=9292,
        help="gRPC port on 127.0.0.1 (default: 9292; 0 picks a free one)",
    )
    dev.add_argument(
        "--streams",
        default="demo",
        metavar="NAME,...",
        help='streams to create once the server is up (default: demo; "" for none)',
    )
    dev.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep the server's log and config files after it stops (their path is printed)",
    )
    dev.set_defaults(run=_dev)


def _binary() -> str:
    """The server binary; builds it on first use with an elapsed-time line on stderr."""
    from ..testing import LIFTBRIDGE_VERSION, LiftbridgeNotFound, find_liftbridge

    try:
        return find_liftbridge(build=False)
    except LiftbridgeNotFound:
        pass
    found: List[str] = []
    failed: List[BaseException] = []

    def build() -> None:
        try:
            found.append(find_liftbridge())
        except BaseException as exc:  # reported by the main thread
            failed.append(exc)

    worker = threading.Thread(target=build, name="lbwire-dev-build", daemon=True)
    started = time.monotonic()
    worker.start()
    tty = sys.stderr.isatty()
    while worker.is_alive():
        elapsed = time.monotonic() - started
        line = (
            f"lbwire: building Liftbridge {LIFTBRIDGE_VERSION} with Go (first use): {elapsed:.0f} s"
        )
        sys.stderr.write(f"\r{line}\x1b[K" if tty else f"{line}\n")
        sys.stderr.flush()
        worker.join(1.0 if tty else 10.0)
    if tty:
        sys.stderr.write("\n")
    if failed:
        raise failed[0]
    return found[0]


async def _create_streams(broker: str, streams: List[str]) -> None:
    from ..client import LiftbridgeClient

    async with LiftbridgeClient([broker]) as client:
        for name in streams:
            await client.create_stream(name, wait_for_stream=True)
            sys.stderr.write(f"lbwire: created stream {name!r}\n")


def _wait_for_a_signal(server: Any) -> bool:
    """Wait until SIGINT or SIGTERM (True) or until the server exits (False).

    The signals only set a flag here. Raised as KeyboardInterrupt, one landing
    inside `Popen.poll` between its lock's acquire and its `try` left the lock
    held, and stopping the server then waited on that lock for ever.
    """
    signalled = False

    def note(signum: int, frame: Optional[FrameType]) -> None:
        nonlocal signalled
        signalled = True

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not signalled and server.running:
            time.sleep(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return signalled


def _dev(args: argparse.Namespace) -> int:
    from ..testing import LiftbridgeNotFound, LiftbridgeServer, LiftbridgeStartError

    if not 0 <= args.port < 65536:
        raise CommandError(f"--port must be in 0-65535, not {args.port}", EXIT_USAGE)
    streams = [name.strip() for name in args.streams.split(",") if name.strip()]
    try:
        server = LiftbridgeServer(
            binary=_binary(), port=args.port or None, keep_files=args.keep_logs
        )
        sys.stderr.write("lbwire: starting Liftbridge on 127.0.0.1 ...\n")
        sys.stderr.flush()
        try:
            with server:
                if streams:
                    import anyio

                    anyio.run(_create_streams, server.broker, streams)
                sys.stdout.write(f"Liftbridge {server.broker} is ready\n")
                sys.stdout.write(f"export LBWIRE_BROKERS={server.broker}\n")
                sys.stdout.flush()
                sys.stderr.write(f"lbwire: log {server.log_path}; Ctrl-C stops it\n")
                sys.stderr.flush()
                if _wait_for_a_signal(server):
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            # Ctrl-C (or SIGTERM) is how `dev` is meant to end: leaving the
            # block above has stopped the server and deleted its data.
            sys.stderr.write("lbwire: Liftbridge stopped\n")
            return 0
        raise CommandError(f"Liftbridge exited on its own; its log: {server.log_path}")
    except (LiftbridgeNotFound, LiftbridgeStartError) as exc:
        raise CommandError(str(exc)) from None
