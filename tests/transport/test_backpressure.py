"""A slow reader of a fast stream holds a window of data, not the stream.

The server is grpcio in a process of its own (flood_server.py), so that the
memory measured is the client's alone. Bound: the test process's resident set
grows by less than 64 MiB over its baseline while 200 MiB stream through it.
Measured on the project's 2-core VM: about 5 MiB on either backend (the 4 MiB
stream window, plus one message in progress and a read buffer).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator

import anyio
import pytest

from lbwire.grpc import Channel, ChannelConfig

pytest.importorskip("grpc", reason="grpcio is not installed (it has no PyPy wheels)")
pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
MESSAGE_SIZE = MiB
MESSAGES = 200
ALLOWED_GROWTH = 64 * MiB
CONFIG = ChannelConfig()  # a 4 MiB stream window, a 16 MiB connection window
FLOOD = "/lbwire.test.Flood/"


@pytest.fixture(scope="module")
def flood_port() -> Iterator[int]:
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("flood_server.py"))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert server.stdout is not None
    assert server.stdin is not None
    try:
        yield int(server.stdout.readline())
    finally:
        server.stdin.close()  # the server's signal to stop
        server.wait(timeout=30)
        server.stdout.close()


def memory_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux 4.0+); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


async def test_a_slow_reader_of_a_200_mib_stream_holds_only_its_window(flood_port: int) -> None:
    async with (
        Channel.open("127.0.0.1", flood_port, config=CONFIG) as channel,
        Channel.open("127.0.0.1", flood_port) as side,  # asks the server how far it got
    ):

        async def handed() -> int:
            return int(await side.unary_unary(FLOOD + "Handed", b""))

        # Warm up: connections open, allocator and code paths used once.
        async with channel.unary_stream(FLOOD + "Stream", b"2:%d" % MESSAGE_SIZE) as stream:
            assert [len(m) async for m in stream] == [MESSAGE_SIZE] * 2
        already = await handed()
        baseline = memory_kib("VmRSS") * 1024
        peak_tracked = reset_peak()
        peak = baseline
        with anyio.fail_after(120):
            async with channel.unary_stream(
                FLOOD + "Stream", b"%d:%d" % (MESSAGES, MESSAGE_SIZE)
            ) as stream:
                received = [len(await stream.receive())]
                # Read nothing more until the server can send nothing more:
                # our window for the call is exhausted...
                connection = channel.connection
                assert connection is not None
                protocol = connection.protocol
                stream_id = stream.stream_id
                while protocol.receive_window(stream_id) > 0:
                    await handed()  # (a round trip: time for the reader to read)
                # ...and grpcio, which asks for the next message only once it
                # has sent the last, is stuck at a window's worth.
                stuck_at = await handed() - already
                assert stuck_at <= CONFIG.stream_window_size // MESSAGE_SIZE + 3
                assert await handed() - already == stuck_at
                # Slowly at first (a round trip per message), then at full speed.
                for _ in range(10):
                    received.append(len(await stream.receive()))
                    await handed()
                    peak = max(peak, memory_kib("VmRSS") * 1024)
                async for message in stream:
                    received.append(len(message))
                    peak = max(peak, memory_kib("VmRSS") * 1024)
        assert received == [MESSAGE_SIZE] * MESSAGES
        if peak_tracked:
            peak = max(peak, memory_kib("VmHWM") * 1024)
        growth = peak - baseline
        print(f"RSS growth while streaming {MESSAGES} MiB: {growth / MiB:.1f} MiB")
        assert growth < ALLOWED_GROWTH
