"""Key-value tables: `table get`, `table put`, `table delete` and `table watch`.

Keys and values are the arguments' UTF-8 bytes; `lbwire.table.Table` does the
work (a table's stream is created by `put` unless it exists).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, Optional

from .common import (
    EXIT_NOT_FOUND,
    CommandError,
    add_command,
    interruptible,
    make_client,
    run_async,
)

if TYPE_CHECKING:
    from ..table import TableEntry

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add `table` and its actions to the `lbwire` parser."""
    table = commands.add_parser(
        "table",
        help="read and write a key-value table kept on a compacted stream",
        description="Read and write a key-value table kept on a compacted stream.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""\
examples:
  lbwire table put config mode fast            # prints the new revision
  lbwire table get config mode                 # prints the value
  lbwire table put config mode safe --expected 3
  lbwire table delete config mode
  lbwire table watch config --prefix mo --format json
""",
    )
    actions = table.add_subparsers(title="actions", metavar="ACTION", required=True)

    get = add_command(
        actions,
        "get",
        help="print KEY's value (exit code 4 when it has none)",
        epilog="""\
examples:
  lbwire table get config mode
  lbwire table get config mode --format json   # key, value, revision, partition
""",
    )
    get.add_argument("stream", help="the table's stream")
    get.add_argument("key", help="the key (UTF-8)")
    get.add_argument("--format", choices=["value", "json"], default="value")
    get.set_defaults(run=run_async(_get))

    put = add_command(
        actions,
        "put",
        help="set KEY to VALUE and print its revision (creates the table's stream)",
        epilog="""\
examples:
  lbwire table put config mode fast
  lbwire table put config mode safe --expected 3   # compare-and-set on revision 3
  lbwire table put config mode new --expected -1   # only if the key has no value

A compare-and-set that finds another revision fails (exit code 1) and stores nothing.
""",
    )
    put.add_argument("stream", help="the table's stream")
    put.add_argument("key", help="the key (UTF-8)")
    put.add_argument("value", help="the value (UTF-8)")
    _expected(put)
    put.add_argument("--partitions", type=int, default=1, help="partitions of a new table's stream")
    put.set_defaults(run=run_async(_put))

    delete = add_command(
        actions,
        "delete",
        help="delete KEY and print the deletion's revision",
        epilog="""\
examples:
  lbwire table delete config mode
  lbwire table delete config mode --expected 7
""",
    )
    delete.add_argument("stream", help="the table's stream")
    delete.add_argument("key", help="the key (UTF-8)")
    _expected(delete)
    delete.set_defaults(run=run_async(_delete))

    watch = add_command(
        actions,
        "watch",
        help="print the table's current entries, then each change",
        epilog="""\
examples:
  lbwire table watch config
  lbwire table watch config --prefix mo --new --count 1
  lbwire table watch config --format json      # key, value, revision, partition, deleted

In the value format a change is "KEY=VALUE" and a deletion "KEY" followed by " deleted".
""",
    )
    watch.add_argument("stream", help="the table's stream")
    watch.add_argument("--prefix", help="only keys starting with it")
    watch.add_argument("--new", action="store_true", help="only changes, not the current entries")
    watch.add_argument("--count", type=int, metavar="N", help="stop after N entries")
    watch.add_argument("--format", choices=["value", "json"], default="value")
    watch.set_defaults(run=run_async(_watch))


def _expected(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--expected",
        type=int,
        metavar="REVISION",
        help="compare-and-set: only if the key is at REVISION (-1: has no value)",
    )


def _entry_json(entry: TableEntry[bytes, bytes]) -> str:
    value: Optional[str] = None if entry.value is None else entry.value.decode(errors="replace")
    return json.dumps(
        {
            "key": entry.key.decode(errors="replace"),
            "value": value,
            "revision": entry.revision,
            "partition": entry.partition,
            "deleted": entry.deleted,
        }
    )


async def _get(args: argparse.Namespace) -> int:
    async with make_client(args) as client, client.table(args.stream, create=False) as table:
        entry = await table.get(args.key.encode())
    if entry is None:
        raise CommandError(
            f"key {args.key!r} of table {args.stream!r} has no value", EXIT_NOT_FOUND
        )
    if args.format == "json":
        print(_entry_json(entry))
    else:
        sys.stdout.buffer.write((entry.value or b"") + b"\n")
    return 0


async def _put(args: argparse.Namespace) -> int:
    async with (
        make_client(args) as client,
        client.table(args.stream, partitions=args.partitions) as table,
    ):
        print(await table.put(args.key.encode(), args.value.encode(), expected=args.expected))
    return 0


async def _delete(args: argparse.Namespace) -> int:
    async with make_client(args) as client, client.table(args.stream, create=False) as table:
        print(await table.delete(args.key.encode(), expected=args.expected))
    return 0


async def _watch(args: argparse.Namespace) -> int:
    out = sys.stdout.buffer
    written = 0
    async with make_client(args) as client, client.table(args.stream, create=False) as table:
        with interruptible():
            async with table.watch(args.prefix, current=not args.new) as changes:
                async for entry in changes:
                    if args.format == "json":
                        out.write(_entry_json(entry).encode() + b"\n")
                    elif entry.deleted:
                        out.write(entry.key + b" deleted\n")
                    else:
                        out.write(entry.key + b"=" + (entry.value or b"") + b"\n")
                    out.flush()
                    written += 1
                    if args.count is not None and written >= args.count:
                        break
    return 0
