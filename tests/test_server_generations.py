"""Where Liftbridge v1.9.0 and the newest Liftbridge behave differently.

Each test starts a server of both generations (whatever ``LBWIRE_SERVER``
selects) and asserts what each one does, so a change in either server shows
up here. The README's "Testing" section lists these differences, and the
suite's other tests that meet them state both outcomes
(``helpers.servers.by_generation``).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from functools import partial
from typing import Optional

import anyio
import h2.config
import h2.connection
import h2.events
import pytest
from helpers import HANG_GUARD, wait_until
from helpers.servers import by_generation

from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorNotFound, LiftbridgeError
from lbwire.testing import SERVER_VERSIONS, LiftbridgeServer
from lbwire.types import AckPolicy, Message, StartPosition, StopPosition

pytestmark = [pytest.mark.server, pytest.mark.anyio]

#: HTTP/2 error code CANCEL (RFC 9113, section 7).
H2_CANCEL = 8
#: gRPC status DEADLINE_EXCEEDED.
GRPC_DEADLINE_EXCEEDED = 4


@pytest.fixture(scope="module", params=SERVER_VERSIONS)
def generation_server(request: pytest.FixtureRequest) -> Iterator[LiftbridgeServer]:
    """A server of each generation in turn (listed in SERVER_FIXTURES)."""
    with LiftbridgeServer(version=request.param) as server:
        assert server.generation == request.param
        yield server


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _publish_request(stream: str, value: bytes, ack_policy: int) -> bytes:
    """A PublishRequest, encoded here so the test depends on no lbwire encoder."""
    name = stream.encode()
    return (
        b"\x12" + _varint(len(value)) + value  # 2: value
        + b"\x1a" + _varint(len(name)) + name  # 3: stream
        + b"\x40" + _varint(ack_policy)  # 8: ackPolicy
        + b"\x48" + _varint(-1)  # 9: expectedOffset, -1: none expected
    )  # fmt: skip


class RawConnection:
    """A bare HTTP/2 client connection (h2 over a socket) to a Liftbridge broker.

    No client library in between, so no client timer or keepalive of its own
    changes what the server is seen to do.
    """

    def __init__(self, broker: str) -> None:
        host, port = broker.rsplit(":", 1)
        self.broker = broker
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.h2.initiate_connection()
        self.flush()

    def close(self) -> None:
        self.sock.close()

    def flush(self) -> None:
        self.sock.sendall(self.h2.data_to_send())

    def start_call(
        self, stream_id: int, path: str, message: bytes, grpc_timeout: Optional[str] = None
    ) -> None:
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", self.broker),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        if grpc_timeout is not None:
            headers.append(("grpc-timeout", grpc_timeout))
        self.h2.send_headers(stream_id, headers)
        framed = b"\0" + len(message).to_bytes(4, "big") + message
        self.h2.send_data(stream_id, framed, end_stream=True)
        self.flush()

    def receive(self, timeout: float = 30) -> list[h2.events.Event]:
        """The events of the next bytes the server sends ([] if none in time)."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return []
        if not data:
            raise AssertionError("the server closed the connection")
        events = self.h2.receive_data(data)
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        self.flush()
        return events


def call_ending_at_deadline(
    broker: str, path: str, message: bytes, grpc_timeout: str
) -> tuple[str, Optional[int]]:
    """Make one unary call that carries a deadline but keeps no timer of its own.

    Returns how the server ended it: ``("status", grpc-status)`` or
    ``("reset", HTTP/2 error code)``.
    """
    raw = RawConnection(broker)
    try:
        raw.start_call(1, path, message, grpc_timeout)
        status: Optional[int] = None
        while True:
            for event in raw.receive():
                if isinstance(event, h2.events.StreamReset) and event.stream_id == 1:
                    return ("reset", int(event.error_code))
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    for name, value in event.headers:
                        if name == "grpc-status":
                            status = int(value)
                if isinstance(event, h2.events.StreamEnded) and event.stream_id == 1:
                    return ("status", status)
    finally:
        raw.close()


def pings_until_too_many(broker: str, stream: str, interval: float) -> tuple[int, bool]:
    """Open a subscription that stays quiet after its handshake and PING every
    ``interval`` seconds, as a keepalive would. Returns the number of the
    PING the server answered with GOAWAY too_many_pings, and whether the
    server closed the connection at once after that GOAWAY (within half a
    second)."""
    raw = RawConnection(broker)
    try:
        name = stream.encode()
        raw.start_call(1, "/proto.API/Subscribe", b"\x0a" + _varint(len(name)) + name)
        handshake = False
        while not handshake:
            handshake = any(
                isinstance(event, h2.events.DataReceived) and event.stream_id == 1
                for event in raw.receive()
            )
        for ping in range(1, 11):
            # Wait out the interval, reading what comes, then PING.
            due = time.monotonic() + interval
            while (left := due - time.monotonic()) > 0:
                assert raw.receive(timeout=left) == []
            raw.h2.ping(ping.to_bytes(8, "big"))
            raw.flush()
            events = raw.receive()
            while not any(isinstance(e, h2.events.PingAckReceived) for e in events):
                events = raw.receive()
            if any(isinstance(e, h2.events.ConnectionTerminated) for e in events):
                (goaway,) = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
                assert goaway.additional_data == b"too_many_pings"
                raw.sock.settimeout(0.5)
                try:
                    closed_at_once = raw.sock.recv(65536) == b""
                except socket.timeout:
                    closed_at_once = False
                return ping, closed_at_once
        raise AssertionError("ten PINGs and no GOAWAY too_many_pings")
    finally:
        raw.close()


async def test_a_call_reaching_its_deadline_ends_in_a_status_or_a_reset(
    generation_server: LiftbridgeServer, stream_name: str
) -> None:
    # v1.9.0's handler answers DEADLINE_EXCEEDED when the deadline passes
    # (grpc-go 1.49). The newest (grpc-go 1.77) also runs a timer of its own
    # that resets the stream with RST_STREAM(CANCEL) at the deadline, and it
    # races the handler: the call ends in the reset (mostly) or the status.
    # A client must read a CANCEL reset that comes after its own deadline as
    # DEADLINE_EXCEEDED, as grpc-go's client does.
    async with LiftbridgeClient([generation_server.broker]) as client:
        # One node, minimum ISR 2: an AckPolicy.ALL publish is never acked.
        await client.create_stream(stream_name, minisr=2, wait_for_stream=True)
    request = _publish_request(stream_name, b"never acked", ack_policy=1)
    ending = await anyio.to_thread.run_sync(
        call_ending_at_deadline, generation_server.broker, "/proto.API/Publish", request, "300m"
    )
    deadline_exceeded = ("status", GRPC_DEADLINE_EXCEEDED)
    assert ending in by_generation(
        generation_server,
        v1_9_0=[deadline_exceeded],
        newest=[("reset", H2_CANCEL), deadline_exceeded],
    )


async def test_min_isr_holds_back_leader_acked_messages_only_on_v1_9_0(
    generation_server: LiftbridgeServer, stream_name: str
) -> None:
    # With one replica below its minimum ISR, v1.9.0 commits nothing. The
    # newest commits a batch without AckPolicy.ALL messages at once on a
    # single-replica partition (its "fast path" skips the commit queue and
    # with it the minimum-ISR check), so the high watermark moves.
    async with LiftbridgeClient([generation_server.broker]) as client:
        await client.create_stream(stream_name, minisr=2, wait_for_stream=True)
        ack = await client.publish(b"a", stream=stream_name, ack_policy=AckPolicy.LEADER)
        assert ack is not None
        assert ack.offset == 0
        partition = await client.get_partition_metadata(stream_name, 0)
    assert partition.newest_offset == 0
    assert partition.high_watermark == by_generation(generation_server, v1_9_0=-1, newest=0)


async def test_too_many_pings_get_goaway_from_both_but_only_v1_9_0_closes_at_once(
    generation_server: LiftbridgeServer, stream_name: str
) -> None:
    # Both enforce grpc-go's PING policy alike (tests/transport/test_keepalive.py
    # models it): a quiet subscription pinged every 0.3 s gets GOAWAY
    # too_many_pings with the answer to its fourth PING. v1.9.0 (grpc-go
    # 1.49) then closes the connection; the newest (grpc-go 1.77) keeps it
    # open for a moment (about a second), in which a client that keeps its
    # keepalive running after the GOAWAY sends more PINGs.
    async with LiftbridgeClient([generation_server.broker]) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
    goaway_at, closed_at_once = await anyio.to_thread.run_sync(
        pings_until_too_many, generation_server.broker, stream_name, 0.3
    )
    assert goaway_at == 4
    assert closed_at_once is by_generation(generation_server, v1_9_0=True, newest=False)


#: SIGKILL restarts tried; the newest came back stuck in about 1 of 4.
RESTARTS = 6


@pytest.mark.slow
@pytest.mark.parametrize("version", SERVER_VERSIONS)
async def test_after_a_kill_a_partition_comes_back_served_or_on_the_newest_stuck(
    version: str, stream_name: str
) -> None:
    # v1.9.0 brings a killed single node's partition back with its messages
    # (after a moment of NotFound). The newest sometimes brings it back
    # with its log but a high watermark of -1: subscribers get nothing and
    # publishes to it are never acked (their calls end at the deadline); it
    # stayed so for as long as it was watched (40 s). Any other outcome fails.
    outcomes = []
    server = LiftbridgeServer(version=version)
    async with server, LiftbridgeClient([server.broker]) as client:
        for attempt in range(RESTARTS):
            stream = f"{stream_name}-{attempt}"
            await client.create_stream(stream, wait_for_stream=True)
            await client.publish(b"before", stream=stream, ack_policy=AckPolicy.LEADER)
            await server.akill()
            await server.astart()

            async def partition_known(stream: str = stream) -> bool:
                try:
                    await client.get_partition_metadata(stream, 0)
                except ErrorNotFound:
                    return False
                return True

            await wait_until(partition_known, "the restarted server knows the partition")
            try:
                with anyio.fail_after(HANG_GUARD):
                    await client.publish(
                        b"after", stream=stream, ack_policy=AckPolicy.LEADER, ack_timeout=3
                    )
            except ErrorNotFound:
                # v1.9.0: the partition is known before it is started.
                await wait_until(partial(publish_acked, client, stream), "a publish is acked")
            except LiftbridgeError:
                partition = await client.get_partition_metadata(stream, 0)
                stuck = (partition.newest_offset, partition.high_watermark) == (0, -1)
                outcomes.append("stuck" if stuck else f"no ack, {partition}")
                continue
            values = [m.value for m in await read_all(client, stream)]
            outcomes.append("served" if values == [b"before", b"after"] else repr(values))
    assert set(outcomes) <= by_generation(server, v1_9_0={"served"}, newest={"served", "stuck"})


async def publish_acked(client: LiftbridgeClient, stream: str) -> bool:
    try:
        await client.publish(b"after", stream=stream, ack_policy=AckPolicy.LEADER, ack_timeout=3)
    except ErrorNotFound:
        return False
    return True


async def read_all(client: LiftbridgeClient, stream: str) -> list[Message]:
    """Every message of partition 0, oldest first."""
    messages = []
    with anyio.fail_after(HANG_GUARD):
        async for message in client.subscribe(
            stream, start_position=StartPosition.EARLIEST, stop_position=StopPosition.STOP_LATEST
        ):
            messages.append(message)
    return messages
