"""The `lbwire` command: a Liftbridge toolbox for the shell.

`main()` is the console-script entry point (``lbwire = "lbwire.cli:main"``);
``python -m lbwire.cli`` runs it too. Each subcommand lives in the module of
its group (`admin`, `dev`, `pub`, `sub`, `consumers`) and registers its own parser there.
Expected failures end as one ``lbwire: error: ...`` line on stderr and an exit
code per class of failure (see `common` and docs/CLI.md); Ctrl-C exits 130
and a closed stdout pipe exits 141, both without a traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from types import FrameType
from typing import Any, List, Optional, Sequence

from . import admin, consumers, dev, pub, sub, table
from .common import (
    EXIT_ALREADY_EXISTS,
    EXIT_BROKEN_PIPE,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_PERMISSION,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CommandError,
    brokers_of,
    formatter,
    leaf,
)

__all__ = ["build_parser", "main"]

_EPILOG = """\
examples:
  lbwire dev                                   # a throwaway server on 127.0.0.1:9292
  lbwire stream create demo --partitions 3
  seq 1 100000 | lbwire pub demo               # one message per line, pipelined
  lbwire sub demo --from earliest --count 10 --format json
  lbwire sub demo --cursor reports             # resume where "reports" left off
  lbwire metadata --format json | jq .
  lbwire table put config mode fast            # a key-value table on a stream

exit codes:
  0 success, 1 other failure, 2 bad arguments, 3 cluster unreachable or timed out,
  4 not found, 5 permission denied, 6 already exists, 7 not supported,
  130 interrupted (Ctrl-C), 141 output pipe closed

Every subcommand takes --brokers (default $LBWIRE_BROKERS, else 127.0.0.1:9292)
and the TLS options; `lbwire COMMAND --help` shows them with examples.
"""


def build_parser() -> argparse.ArgumentParser:
    """The `lbwire` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="lbwire",
        description="Work with a Liftbridge cluster from the shell.",
        epilog=_EPILOG,
        formatter_class=formatter(),
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"lbwire {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    dev.register(commands)
    admin.register(commands)
    pub.register(commands)
    sub.register(commands)
    consumers.register(commands)
    table.register(commands)
    return parser


def _silence_stdout() -> None:
    # Python flushes stdout at exit; with the reader gone that flush would
    # print "Exception ignored ... BrokenPipeError".
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _exit_code(exc: BaseException, args: argparse.Namespace) -> int:
    """Report an expected failure on stderr and return its exit code; re-raise a bug."""
    from ..error import (
        ErrorAlreadyExists,
        ErrorDeadlineExceeded,
        ErrorInvalidArgument,
        ErrorNoMetadataLeader,
        ErrorNotFound,
        ErrorPermissionDenied,
        ErrorUnavailable,
        LiftbridgeError,
    )

    exc = leaf(exc)
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, BrokenPipeError):
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    code = EXIT_FAILURE
    message = str(exc)
    if isinstance(exc, CommandError):
        code = exc.code
    elif isinstance(exc, (ErrorUnavailable, ErrorDeadlineExceeded, ErrorNoMetadataLeader)):
        code = EXIT_UNAVAILABLE
        brokers = ",".join(brokers_of(args))
        message = (
            f"cannot reach Liftbridge at {brokers}: {exc} (is a server running there? "
            "`lbwire dev` starts one; --brokers or $LBWIRE_BROKERS choose another)"
        )
    elif isinstance(exc, ErrorNotFound):
        code = EXIT_NOT_FOUND
    elif isinstance(exc, ErrorPermissionDenied):
        code = EXIT_PERMISSION
    elif isinstance(exc, ErrorAlreadyExists):
        code = EXIT_ALREADY_EXISTS
    elif isinstance(exc, (ErrorInvalidArgument, ValueError)):
        code = EXIT_USAGE
    elif isinstance(exc, (LiftbridgeError, OSError)):
        code = EXIT_FAILURE
    else:
        raise exc
    _error_line(message or type(exc).__name__)
    return code


def _error_line(message: str) -> None:
    sys.stderr.write(f"lbwire: error: {message}\n")
    sys.stderr.flush()


def _interrupt(signum: int, frame: Optional[FrameType]) -> Any:
    raise KeyboardInterrupt


def _join_dashed_values(argv: List[str]) -> List[str]:
    """`--from -5m` as `--from=-5m`: argparse takes `-5m` for an option otherwise."""
    out: List[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--from" and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            out.append(f"--from={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run `lbwire` with `argv` (default: the command line); return the exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(
        _join_dashed_values(sys.argv[1:] if argv is None else list(argv))
    )
    # argparse gives a `nargs="*"` positional only the words before the first
    # option; `pub demo --key k a b` means values a and b, so they join it here.
    spill = getattr(args, "spill_into", None)
    if extra and spill and not any(word.startswith("-") for word in extra):
        getattr(args, spill).extend(extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    run = getattr(args, "run", None)
    if run is None:
        parser.print_usage(sys.stderr)
        _error_line("name a command (see `lbwire --help`)")
        return EXIT_USAGE
    # SIGTERM stops a command the way Ctrl-C does: subscriptions commit their
    # cursor and `lbwire dev` stops its server.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result: int = run(args)
        sys.stdout.flush()
    except BaseException as exc:
        if isinstance(exc, SystemExit):
            raise
        return _exit_code(exc, args)
    return result
