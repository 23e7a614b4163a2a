"""``python -m lbwire.testing``: find or build Liftbridge, or run a throwaway server."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from collections.abc import Sequence
from typing import Optional

from lbwire.testing._build import (
    LIFTBRIDGE_VERSION,
    SERVER_ENV,
    SERVER_VERSIONS,
    LiftbridgeNotFound,
    find_liftbridge,
)
from lbwire.testing._process import LiftbridgeStartError
from lbwire.testing._server import LiftbridgeServer


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m lbwire.testing",
        description="Throwaway Liftbridge servers for tests.",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument(
        "--install",
        action="store_true",
        help="find the Liftbridge binary, building it with Go if needed, and print its path",
    )
    action.add_argument(
        "--serve",
        action="store_true",
        help="run a throwaway server on 127.0.0.1 until interrupted",
    )
    parser.add_argument(
        "--server",
        choices=SERVER_VERSIONS,
        default=None,
        help=f"the server generation (default: ${SERVER_ENV}, else {LIFTBRIDGE_VERSION})",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        binary = find_liftbridge(version=args.server)
        if args.install:
            print(binary)
            return 0
        with LiftbridgeServer(binary=binary) as server:
            print(
                f"Liftbridge {server.broker} (log {server.log_path}); Ctrl-C stops it",
                flush=True,
            )
            with contextlib.suppress(KeyboardInterrupt):
                while server.running:
                    time.sleep(0.5)
        return 0
    except (LiftbridgeNotFound, LiftbridgeStartError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
