"""What every `lbwire` subcommand shares: connection options, exit codes, output helpers."""

from __future__ import annotations

import argparse
import base64
import functools
import json
import os
import sys
import time
from contextlib import contextmanager
from typing import (
    TYPE_CHECKING,
    Any,
    Awaitable,
    Callable,
    Dict,
    Iterator,
    List,
    Optional,
    Sequence,
    Type,
)

if TYPE_CHECKING:
    import ssl

    from ..client import LiftbridgeClient
    from ..types import Message

__all__ = [
    "DEFAULT_BROKERS",
    "EXIT_ALREADY_EXISTS",
    "EXIT_BROKEN_PIPE",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_PERMISSION",
    "EXIT_UNAVAILABLE",
    "EXIT_UNSUPPORTED",
    "EXIT_USAGE",
    "CommandError",
    "MessagePrinter",
    "connection_options",
    "leaf",
    "make_client",
    "message_json",
    "output_options",
    "print_table",
]

#: The broker used when neither ``--brokers`` nor ``$LBWIRE_BROKERS`` names one.
DEFAULT_BROKERS = "127.0.0.1:9292"

# Exit codes, one per class of failure a shell script may want to tell apart
# (documented in docs/CLI.md; argparse itself exits 2 on bad arguments).
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_NOT_FOUND = 4
EXIT_PERMISSION = 5
EXIT_ALREADY_EXISTS = 6
EXIT_UNSUPPORTED = 7
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


class CommandError(Exception):
    """An expected failure: printed as one `lbwire: error: ...` line, then exit `code`."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def leaf(exc: BaseException) -> BaseException:
    """The error inside (nested) exception groups from task groups.

    A failed task cancels its siblings, so the first error that is not a
    cancellation names the cause.
    """
    while True:
        inner: Optional[List[BaseException]] = getattr(exc, "exceptions", None)
        if not inner:
            return exc
        cancelled = ("CancelledError", "Cancelled")
        exc = next((e for e in inner if type(e).__name__ not in cancelled), inner[0])


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples in epilogs as written."""


def connection_options() -> argparse.ArgumentParser:
    """A parent parser with the options every subcommand takes."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")
    group.add_argument(
        "--brokers",
        metavar="HOST:PORT,...",
        default=None,
        help=f"seed brokers (default: $LBWIRE_BROKERS, else {DEFAULT_BROKERS})",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="give up on an unreachable or silent cluster after this long (default: 10)",
    )
    group.add_argument("--tls", action="store_true", help="connect with TLS")
    group.add_argument(
        "--ca", metavar="FILE", help="CA certificates to verify brokers (implies --tls)"
    )
    group.add_argument(
        "--cert", metavar="FILE", help="client certificate for mTLS, PEM (implies --tls)"
    )
    # Not --key: `pub --key` is the message key.
    group.add_argument(
        "--tls-key",
        dest="key_file",
        metavar="FILE",
        help="the client certificate's private key, PEM (if not in --cert)",
    )
    group.add_argument(
        "--tls-server-hostname",
        metavar="NAME",
        help="host name to verify in the broker's certificate instead of its address",
    )
    return parent


#: The blocks a Ctrl-C or SIGTERM cancels, innermost last (see `interruptible`).
_INTERRUPTIBLE: List[Any] = []


@contextmanager
def interruptible() -> Iterator[None]:
    """Let Ctrl-C and SIGTERM cancel only this block, not the whole command.

    What follows the block (a subscription's last cursor commit) then still
    has its client: cancelling the whole command would also cancel the
    client's connection tasks, so that the commit could not connect.
    """
    import anyio

    scope = anyio.CancelScope()
    _INTERRUPTIBLE.append(scope)
    try:
        with scope:
            yield
    finally:
        _INTERRUPTIBLE.remove(scope)


def run_async(command: Callable[[argparse.Namespace], Awaitable[int]]) -> Callable[..., int]:
    """Wrap an async command so `main` can call it; it runs on asyncio.

    Ctrl-C (SIGINT) and SIGTERM cancel the command here, so `finally` blocks
    (a subscription's last cursor commit) run either way, and both end as
    KeyboardInterrupt. SIGINT is watched too rather than left to the runner:
    before Python 3.11, asyncio's runner does not cancel on Ctrl-C but raises
    KeyboardInterrupt wherever the loop happens to be.
    """

    def run(args: argparse.Namespace) -> int:
        import signal

        import anyio

        terminated = False
        result = 0

        async def watch_signals(scope: anyio.CancelScope) -> None:
            nonlocal terminated
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    terminated = True
                    (_INTERRUPTIBLE[-1] if _INTERRUPTIBLE else scope).cancel()
                    return

        async def supervise() -> None:
            nonlocal result
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch_signals, tg.cancel_scope)
                result = await command(args)
                tg.cancel_scope.cancel()

        anyio.run(supervise)
        if terminated:
            raise KeyboardInterrupt
        return result

    return run


def add_command(
    commands: Any,
    name: str,
    *,
    help: str,
    epilog: str,
    parents: Sequence[argparse.ArgumentParser] = (),
) -> argparse.ArgumentParser:
    """Add a subcommand parser with the connection options and examples."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help,
        description=help[:1].upper() + help[1:] + ".",
        epilog=epilog,
        formatter_class=_Formatter,
        parents=[connection_options(), *parents],
    )
    return parser


def formatter() -> Type[argparse.HelpFormatter]:
    """The help formatter of every `lbwire` parser."""
    return _Formatter


def brokers_of(args: argparse.Namespace) -> List[str]:
    """The seed brokers from `--brokers`, `$LBWIRE_BROKERS` or the default."""
    text = getattr(args, "brokers", None) or os.environ.get("LBWIRE_BROKERS") or DEFAULT_BROKERS
    brokers = [b.strip() for b in text.split(",") if b.strip()]
    if not brokers:
        raise CommandError("--brokers names no broker", EXIT_USAGE)
    return brokers


def _ssl_context(args: argparse.Namespace) -> Optional[ssl.SSLContext]:
    if not (args.tls or args.ca or args.cert or args.key_file or args.tls_server_hostname):
        return None
    if args.key_file and not args.cert:
        raise CommandError("--tls-key needs --cert", EXIT_USAGE)
    import ssl

    for option, path in (("--ca", args.ca), ("--cert", args.cert), ("--tls-key", args.key_file)):
        if path and not os.path.isfile(path):
            raise CommandError(f"cannot read {option} {path}: no such file", EXIT_USAGE)
    try:
        context = ssl.create_default_context(cafile=args.ca)
        if args.cert:
            context.load_cert_chain(args.cert, args.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise CommandError(f"cannot load TLS files: {exc}", EXIT_USAGE) from None
    return context


def make_client(args: argparse.Namespace, **options: Any) -> LiftbridgeClient:
    """A client for the cluster the options name (not yet opened)."""
    from ..client import LiftbridgeClient
    from ..retry import RetryPolicy

    if args.timeout <= 0:
        raise CommandError("--timeout must be positive", EXIT_USAGE)
    # A shell user wants a down cluster reported promptly, not after the
    # library's long default retry budget.
    retry = RetryPolicy(attempts=6, max_backoff=1.0, max_time=args.timeout)
    return LiftbridgeClient(
        brokers_of(args),
        ssl_context=_ssl_context(args),
        tls_server_hostname=args.tls_server_hostname,
        connect_timeout=min(5.0, args.timeout),
        rpc_timeout=args.timeout,
        retry_policy=retry,
        resubscribe_wait_time=args.timeout,
        **options,
    )


def iso_time(ns: int) -> str:
    """A timestamp in ns since the epoch as ISO-8601 UTC with microseconds."""
    seconds, rest = divmod(ns, 1_000_000_000)
    return f"{_utc_second(seconds)}.{rest // 1000:06d}Z"


@functools.lru_cache(maxsize=64)
def _utc_second(seconds: int) -> str:
    # Consecutive messages mostly share their second: formatted once.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _text(data: bytes) -> Optional[str]:
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def message_json(msg: Message) -> str:
    """One message as a JSON object on one line.

    `encoding` says how key, header values and value are written: "utf-8"
    when every one of them is valid UTF-8, else "base64" for all of them, so
    a reader decodes one message one way.
    """
    fields = [msg.key or b"", msg.value, *msg.headers.values()]
    texts: List[str] = []
    encoding = "utf-8"
    for field in fields:
        text = _text(field)
        if text is None:
            encoding = "base64"
            break
        texts.append(text)
    if encoding == "base64":
        texts = [base64.b64encode(f).decode("ascii") for f in fields]
    key, value, *header_values = texts
    record: Dict[str, Any] = {
        "stream": msg.stream,
        "partition": msg.partition,
        "offset": msg.offset,
        "timestamp": iso_time(msg.timestamp),
        "key": key if msg.key else None,
        "headers": dict(zip(msg.headers, header_values)),
        "encoding": encoding,
        "value": value,
    }
    return _encode_json(record)


def print_table(rows: List[List[str]], header: List[str]) -> None:
    """Print rows as left-aligned columns under a header."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row)]
    for row in [header, *rows]:
        line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths))
        sys.stdout.write(line.rstrip() + "\n")


def output_options(parser: argparse.ArgumentParser) -> None:
    """Add `--count` and `--format` for a command that prints messages."""
    parser.add_argument("--count", type=int, metavar="N", help="stop after N messages")
    parser.add_argument(
        "--format",
        choices=["value", "json"],
        default="value",
        help="value: the value and a newline; json: one object per message "
        "(stream, partition, offset, timestamp, key, headers, encoding, value)",
    )


class MessagePrinter:
    """Writes messages to stdout in batches; its owner flushes it as well.

    `sub` and `group consume` print with it, in the `--format` chosen.
    """

    def __init__(self, fmt: str) -> None:
        self.out = sys.stdout.buffer
        self.json = fmt == "json"
        self.parts: List[bytes] = []
        self.written = 0
        self.last_offset = -1

    def write(self, msg: Message) -> None:
        """Add one message to the batch; a full batch is written out."""
        if self.json:
            self.parts.append(message_json(msg).encode())
        else:
            self.parts.append(msg.value)
        self.written += 1
        self.last_offset = msg.offset
        if len(self.parts) >= 512:
            self.flush()

    def flush(self) -> None:
        """Write out the batch and flush stdout."""
        if self.parts:
            self.parts.append(b"")
            self.out.write(b"\n".join(self.parts))
            self.parts.clear()
        self.out.flush()

    async def flush_periodically(self, commit: Optional[Any] = None) -> None:
        """Flush what was written (and commit it) a few times a second."""
        import anyio

        flushed = 0
        while True:
            await anyio.sleep(0.1)
            if self.written != flushed:
                flushed = self.written
                self.flush()
                if commit is not None:
                    await commit(self.last_offset)
