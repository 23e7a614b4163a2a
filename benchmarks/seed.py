"""Fill the benchmark streams with stored messages, fast.

Subscribe scenarios read up to a million stored messages; publishing them
through any of the measured clients would take minutes. When the server's
embedded NATS address is known (always for the throwaway server), messages go
straight to the stream's NATS subject in Liftbridge's publish envelope, which
is what the server's own Publish RPC hands to NATS; the server stores them
exactly like published ones. Otherwise lbwire's pipelined publish fills them.

Either way the server is polled for the newest offset, so nothing is assumed:
the fill ends when the partition really holds the messages.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Callable, Optional, Tuple

from lbwire import wire
from lbwire.client import AckPolicy, LiftbridgeClient
from lbwire.error import ErrorNotFound
from lbwire.wire.envelope import encode_message_envelope

from ._common import payload

#: Messages sent to NATS before checking how far the server has stored them.
_CHUNK = 20_000
#: How far (messages) the NATS writer may run ahead of what the server stored.
_MAX_LAG = 100_000
_STALL_SECONDS = 10.0


class NatsWriter:
    """A minimal NATS publisher (the text protocol: CONNECT, PUB, PING/PONG)."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._buffer = b""
        info = self._line()
        if not info.startswith(b"INFO"):
            raise ConnectionError(f"NATS at {host}:{port} said {info[:80]!r}, not INFO")
        self._sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n')
        self.flush()

    def _line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("NATS closed the connection")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line

    def publish_many(self, subject: str, data: bytes, count: int) -> None:
        frame = b"PUB %s %d\r\n%s\r\n" % (subject.encode(), len(data), data)
        per_write = max(1, (1 << 20) // len(frame))
        left = count
        while left > 0:
            n = min(per_write, left)
            self._sock.sendall(frame * n)
            left -= n

    def flush(self) -> None:
        """Round-trip a PING: NATS has then processed everything sent before it."""
        self._sock.sendall(b"PING\r\n")
        while True:
            line = self._line()
            if line == b"PONG":
                return
            if line == b"PING":
                self._sock.sendall(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                raise ConnectionError(f"NATS: {line.decode(errors='replace')}")

    def close(self) -> None:
        self._sock.close()


async def stored(client: LiftbridgeClient, stream: str, partition: int = 0) -> int:
    """How many messages a partition of `stream` holds (newest offset + 1)."""
    meta = await client.get_partition_metadata(stream, partition)
    return meta.newest_offset + 1


async def ensure_stream(
    client: LiftbridgeClient, stream: str, partitions: int = 1, *, concurrency_control: bool = False
) -> None:
    try:
        await client.get_partition_metadata(stream, 0)
    except ErrorNotFound:
        await client.create_stream(
            stream,
            partitions=partitions,
            wait_for_stream=True,
            optimistic_concurrency_control=concurrency_control or None,
        )


async def fill(
    client: LiftbridgeClient,
    stream: str,
    count: int,
    size: int,
    nats: Optional[Tuple[str, int]],
    progress: Callable[[str], Any],
    *,
    partition: int = 0,
    partitions: int = 1,
) -> None:
    """Make a partition of `stream` hold at least `count` messages of `size` bytes.

    The stream is created with `partitions` partitions if it does not exist.
    """
    import anyio

    await ensure_stream(client, stream, partitions)
    have = await stored(client, stream, partition)
    # The server takes partition N > 0 from the NATS subject `stream.N`.
    subject = stream if partition == 0 else f"{stream}.{partition}"
    if have >= count:
        return
    value = payload(size)
    started = time.perf_counter()
    if nats is not None:
        data = encode_message_envelope(wire.Message(value=value))
        writer = NatsWriter(*nats)
        try:
            sent = have
            last_have, last_change = have, time.perf_counter()
            while have < count:
                if sent < count and sent - have < _MAX_LAG:
                    n = min(_CHUNK, count - sent)
                    writer.publish_many(subject, data, n)
                    writer.flush()
                    sent += n
                else:
                    await anyio.sleep(0.05)
                have = await stored(client, stream, partition)
                now = time.perf_counter()
                if have != last_have:
                    last_have, last_change = have, now
                elif now - last_change > _STALL_SECONDS:
                    sent = have  # NATS dropped some (slow consumer): send them again
                    last_change = now
        finally:
            writer.close()
    else:
        pending = []
        for _ in range(count - have):
            pending.append(
                await client.publish_async(
                    value, stream=stream, partition=partition, ack_policy=AckPolicy.LEADER
                )
            )
            if len(pending) >= 1000:
                for item in pending:
                    await item
                pending.clear()
        for item in pending:
            await item
        have = await stored(client, stream, partition)
    elapsed = time.perf_counter() - started
    where = f"{stream}/{partition}" if partitions > 1 else stream
    progress(f"  filled {where}: {have:,} messages of {size} B in {elapsed:.1f} s")
