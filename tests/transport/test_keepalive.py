"""Keepalive: dead peers are noticed; live Liftbridge servers are never pinged too often.

What is proven, and how:

* A peer that stops answering (the proxy stalls: nothing forwarded, nothing
  closed) fails the calls in flight within keepalive_time +
  keepalive_timeout, and a closed connection fails them at once: real grpcio
  server, real sockets, keepalive scaled down through the config's test
  escape hatch (``MIN_KEEPALIVE_TIME``).
* The default schedule never breaks grpc-go's ping policy: a transcription of
  grpc-go's enforcement (v1.49, Liftbridge v1.9.0's) plays hours of a quiet
  subscription against lbwire's :class:`KeepaliveSchedule` on a simulated clock.
* That transcription is right: the real Liftbridge server, pinged at a scaled
  cadence that breaks the policy, sends GOAWAY "too_many_pings" exactly when
  the model says it would. (A real server cannot prove the compliant case in
  a test: that takes three 5-minute intervals.)
"""

from __future__ import annotations

import math
import uuid
from typing import List, Optional, Tuple

import anyio
import pytest
from helpers.frozen import frozen
from helpers.h2peer import memory_server
from helpers.proxy import tcp_proxy

from lbwire import wire
from lbwire.client import LiftbridgeClient
from lbwire.grpc import Channel, ChannelConfig, GRPCError, Status, config
from lbwire.grpc.keepalive import (
    GRPC_GO_MIN_PING_INTERVAL,
    GRPC_GO_MIN_PING_INTERVAL_WITHOUT_CALLS,
    SAFE_KEEPALIVE_TIME,
    KeepaliveSchedule,
)
from lbwire.testing import LiftbridgeServer

# Time allowed for event loop and scheduling delays on a loaded 2-core machine.
SLACK = 0.5


@pytest.fixture
def fast_keepalive(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test escape hatch: keepalive intervals far below the 10 s floor."""
    monkeypatch.setattr(config, "MIN_KEEPALIVE_TIME", 0.01)


# -- grpc-go's policy, and lbwire's schedule, on a simulated clock ---------------------------


class GrpcGoPingPolicy:
    """grpc-go's server-side PING enforcement, as in v1.49.0 (Liftbridge v1.9.0).

    internal/transport/http2_server.go, ``handlePing``: the defaults
    (MinTime 5 min, PermitWithoutStream false, defaultPingTimeout 2 h,
    maxPingStrikes 2); ``setResetPingStrikes`` runs when the server writes
    headers, data or trailers.
    """

    def __init__(self) -> None:
        self.last_ping_at = -math.inf  # Go's zero time: long ago
        self.strikes = 0
        self.reset_strikes = False

    def server_wrote(self) -> None:
        self.reset_strikes = True

    def ping(self, now: float, active_streams: int) -> bool:
        """A PING arrived; True if the server answers with GOAWAY too_many_pings."""
        try:
            if self.reset_strikes:
                self.reset_strikes = False
                self.strikes = 0
                return False
            if active_streams < 1:
                limit = GRPC_GO_MIN_PING_INTERVAL_WITHOUT_CALLS
            else:
                limit = GRPC_GO_MIN_PING_INTERVAL
            if self.last_ping_at + limit > now:
                self.strikes += 1
            return self.strikes > 2
        finally:
            self.last_ping_at = now


def quiet_connection(
    interval: float,
    *,
    calls: bool,
    without_calls: bool = False,
    hours: float = 3.0,
    delay: float = 0.0005,
) -> Tuple[int, Optional[int]]:
    """Play a connection on which the server sends nothing after its first
    response (a quiet subscription, or no call at all), the client pinging on
    its schedule. Returns the PINGs sent and which of them got GOAWAY."""
    policy = GrpcGoPingPolicy()
    policy.server_wrote()  # the subscription's headers and first message
    schedule = KeepaliveSchedule(interval, without_calls=without_calls, now=0.0)
    now = 0.0
    pings = 0
    while True:
        due = schedule.next_ping(calls)
        if due > hours * 3600:
            return pings, None
        now = max(now, due)
        schedule.pinged(now)
        pings += 1
        if policy.ping(now + delay, active_streams=1 if calls else 0):
            return pings, pings
        schedule.received(now + 2 * delay)  # the PING's answer


def test_the_safe_keepalive_never_gets_too_many_pings_on_a_quiet_subscription() -> None:
    pings, goaway = quiet_connection(SAFE_KEEPALIVE_TIME, calls=True)
    assert goaway is None
    assert pings == int(3 * 3600 // SAFE_KEEPALIVE_TIME)  # and it does ping


def test_even_an_interval_of_exactly_five_minutes_never_gets_too_many_pings() -> None:
    # The next PING waits for the answer to the last: they arrive > 5 min apart.
    assert quiet_connection(GRPC_GO_MIN_PING_INTERVAL, calls=True)[1] is None


def test_a_shorter_interval_gets_too_many_pings_at_the_fourth_ping() -> None:
    # (Which is why the model can fail: and the real server agrees, below.)
    assert quiet_connection(GRPC_GO_MIN_PING_INTERVAL - 1, calls=True) == (4, 4)
    assert quiet_connection(config.MIN_KEEPALIVE_TIME, calls=True) == (4, 4)


def test_no_pings_without_calls_unless_asked() -> None:
    assert quiet_connection(SAFE_KEEPALIVE_TIME, calls=False) == (0, None)


def test_pings_without_calls_are_rare_enough_for_grpc_go() -> None:
    pings, goaway = quiet_connection(SAFE_KEEPALIVE_TIME, calls=False, without_calls=True, hours=24)
    assert goaway is None
    assert pings >= 10


def test_the_liftbridge_client_keeps_alive_safely_by_default() -> None:
    client = LiftbridgeClient(["127.0.0.1:9292"])
    channel_config = client.channel_config
    assert channel_config.keepalive_time == SAFE_KEEPALIVE_TIME
    assert channel_config.keepalive_time >= GRPC_GO_MIN_PING_INTERVAL
    assert not channel_config.keepalive_without_calls
    assert LiftbridgeClient(["x:1"], keepalive_time=None).channel_config.keepalive_time is None


def test_keepalive_time_below_the_floor_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 10"):
        ChannelConfig(keepalive_time=5)


# -- dead peers, for real ---------------------------------------------------------------------

pytestmark = pytest.mark.anyio
KEEPALIVE = (0.4, 0.4)  # keepalive_time, keepalive_timeout


def fast_config() -> ChannelConfig:
    time, timeout = KEEPALIVE
    return ChannelConfig(keepalive_time=time, keepalive_timeout=timeout, connect_timeout=1.0)


async def test_a_peer_that_stops_answering_fails_the_calls_in_flight_in_time(
    fast_keepalive: None,
) -> None:
    peer_module = pytest.importorskip("peer")
    peer = peer_module.PeerServer()
    path = peer_module.path
    try:
        async with (
            tcp_proxy(peer.port) as proxy,
            Channel.open("127.0.0.1", proxy.port, config=fast_config()) as channel,
        ):
            request = uuid.uuid4().hex
            failures: List[Tuple[GRPCError, float]] = []
            stalled_at = math.inf

            async def unary() -> None:
                with pytest.raises(GRPCError) as caught:
                    await channel.unary_unary(path("Hang"), request.encode())
                failures.append((caught.value, anyio.current_time() - stalled_at))

            async def streaming() -> None:
                with pytest.raises(GRPCError) as caught:  # noqa: PT012
                    async with channel.unary_stream(path("Forever"), b"") as stream:
                        async for _ in stream:
                            streaming_started.set()
                failures.append((caught.value, anyio.current_time() - stalled_at))

            streaming_started = anyio.Event()
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(unary)
                    tasks.start_soon(streaming)
                    await anyio.to_thread.run_sync(peer.event("started", request).wait, 5)
                    await streaming_started.wait()
                    proxy.stall()
                    stalled_at = anyio.current_time()
            assert len(failures) == 2
            for error, after in failures:
                assert error.status is Status.UNAVAILABLE
                assert "keepalive" in error.message
                assert after < sum(KEEPALIVE) + SLACK
            # A new connection (the proxy forwards new ones) serves the next call.
            assert await channel.unary_unary(path("Echo"), b"again") == b"again"
            assert proxy.connections == 2
    finally:
        peer.stop(None)


async def test_a_call_on_a_connection_that_died_while_idle_fails_in_time(
    fast_keepalive: None,
) -> None:
    peer_module = pytest.importorskip("peer")
    peer = peer_module.PeerServer()
    path = peer_module.path
    try:
        async with (
            tcp_proxy(peer.port) as proxy,
            Channel.open("127.0.0.1", proxy.port, config=fast_config()) as channel,
        ):
            assert await channel.unary_unary(path("Echo"), b"up") == b"up"
            proxy.stall()
            started = anyio.current_time()
            with anyio.fail_after(10), pytest.raises(GRPCError) as caught:
                await channel.unary_unary(path("Echo"), b"into the void")
            assert caught.value.status is Status.UNAVAILABLE
            # The keepalive task wakes with the call (it was waiting for one).
            assert anyio.current_time() - started < sum(KEEPALIVE) + SLACK
    finally:
        peer.stop(None)


async def test_a_call_after_a_long_idle_spell_pings_at_once(fast_keepalive: None) -> None:
    # Nothing was received for longer than keepalive_time when the call
    # starts: the PING is due at once, not when the keepalive task would next
    # have looked (it used to sleep a whole interval while no call was in
    # progress). The peer is the scripted h2 peer in memory, told to stop
    # reading: a fake one, as only it can be frozen at a chosen moment here.
    time, timeout = 2.0, 0.2
    config = ChannelConfig(keepalive_time=time, keepalive_timeout=timeout)
    async with memory_server() as server:
        connect = server.connect
        async with Channel.open("raw.test", 1, config=config, connect_transport=connect) as ch:
            assert await ch.unary_unary("/t/Echo", b"up") == b"up"
            # The idle spell itself is the condition: there is nothing to wait on.
            await anyio.sleep(time + 0.1)
            server.stalled.set()
            started = anyio.current_time()
            with anyio.fail_after(10), pytest.raises(GRPCError) as caught:
                await ch.unary_unary("/t/Hang", b"")
            assert caught.value.status is Status.UNAVAILABLE
            assert "keepalive" in caught.value.message
            assert anyio.current_time() - started < timeout + SLACK


async def test_a_closed_connection_fails_the_calls_in_flight_at_once() -> None:
    peer_module = pytest.importorskip("peer")
    peer = peer_module.PeerServer()
    path = peer_module.path
    try:
        async with tcp_proxy(peer.port) as proxy, Channel.open("127.0.0.1", proxy.port) as channel:
            request = uuid.uuid4().hex
            failures: List[GRPCError] = []

            async def unary() -> None:
                with pytest.raises(GRPCError) as caught:
                    await channel.unary_unary(path("Hang"), request.encode())
                failures.append(caught.value)

            # No keepalive: the socket's end alone must do it.
            with anyio.fail_after(5):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(unary)
                    await anyio.to_thread.run_sync(peer.event("started", request).wait, 5)
                    await proxy.cut()
            assert failures[0].status is Status.UNAVAILABLE
            assert await channel.unary_unary(path("Echo"), b"again") == b"again"
    finally:
        peer.stop(None)


async def test_a_call_to_a_frozen_liftbridge_fails_within_keepalive(
    fresh_server: LiftbridgeServer, stream_name: str, fast_keepalive: None
) -> None:
    # The real frozen peer of issue 10 item 3: a subscription on a connection
    # the client already used, to a server that was then SIGSTOPped.
    async with LiftbridgeClient([fresh_server.broker]) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
    host, port = fresh_server.broker.rsplit(":", 1)
    request = wire.SubscribeRequest(stream=stream_name, partition=0).encode()
    async with Channel.open(host, int(port), config=fast_config()) as channel:
        await channel.unary_unary("/proto.API/FetchMetadata", b"", timeout=10)
        async with frozen(fresh_server):
            started = anyio.current_time()
            with anyio.fail_after(10), pytest.raises(GRPCError) as caught:
                async with channel.unary_stream("/proto.API/Subscribe", request) as stream:
                    await stream.receive()
            elapsed = anyio.current_time() - started
            assert caught.value.status is Status.UNAVAILABLE
            assert "keepalive" in caught.value.message
            assert elapsed < sum(KEEPALIVE) + SLACK
            # A new connection to the frozen server fails within the connect
            # timeout too (the kernel accepts it; the server never answers).
            with anyio.fail_after(10), pytest.raises(GRPCError) as caught:
                await channel.unary_unary("/proto.API/FetchMetadata", b"")
            assert caught.value.status is Status.UNAVAILABLE
        assert await channel.unary_unary("/proto.API/FetchMetadata", b"", timeout=10) is not None


# -- the real server's policy -----------------------------------------------------------------


async def test_liftbridge_enforces_the_modelled_policy(
    liftbridge_server: LiftbridgeServer, stream_name: str, fast_keepalive: None
) -> None:
    # A quiet subscription, pinged every 0.3 s instead of every 5 min: the
    # server must answer the fourth PING with GOAWAY too_many_pings, as the
    # model does. (Then the model's verdict on 310 s can be trusted.)
    interval = 0.3
    predicted = quiet_connection(interval, calls=True, delay=0.001)
    assert predicted == (4, 4)
    async with LiftbridgeClient([liftbridge_server.broker]) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
    host, port = liftbridge_server.broker.rsplit(":", 1)
    channel_config = ChannelConfig(keepalive_time=interval, keepalive_timeout=5)
    async with Channel.open(host, int(port), config=channel_config) as channel:
        request = wire.SubscribeRequest(stream=stream_name, partition=0).encode()
        with anyio.fail_after(30), pytest.raises(GRPCError) as caught:  # noqa: PT012
            async with channel.unary_stream("/proto.API/Subscribe", request) as stream:
                assert await stream.receive() == b""  # the handshake, then silence
                connection = channel.connection
                assert connection is not None
                before = connection.protocol.pings_sent
                await stream.receive()
        assert caught.value.status is Status.UNAVAILABLE
        assert connection.protocol.pings_sent - before == predicted[1]
        # The channel backs off, as grpc clients do.
        assert channel.keepalive_time == 2 * interval
