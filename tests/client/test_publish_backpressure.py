"""Backpressure: the bound on a client's publishes in flight, `flush`, and cancelling a wait.

A SIGSTOPped (frozen) server keeps its sockets open and acknowledges nothing,
so publishes stay in flight exactly as long as the test keeps it frozen. Each
test starts its own server (``fresh_server``), as it freezes it.
"""

from __future__ import annotations

import anyio
import pytest
from client_support import HANG_GUARD, read_all
from helpers import wait_until
from helpers.frozen import frozen

from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorDeadlineExceeded
from lbwire.publish import PendingAck
from lbwire.testing import LiftbridgeServer

pytestmark = pytest.mark.anyio


async def warm(client: LiftbridgeClient, stream: str) -> None:
    """Create `stream` and open the PublishAsync stream with a first, acked publish.

    That message is not among the test's: `stored` leaves it out.
    """
    await client.create_stream(stream, wait_for_stream=True)
    await (await client.publish_async(b"warm", stream=stream))


def waiting(client: LiftbridgeClient) -> int:
    """How many callers wait for room in the client's bound."""
    return client._publisher.room.waiting  # noqa: SLF001 - no public API shows the line


async def stored(client: LiftbridgeClient, stream: str) -> list[bytes]:
    """The test's messages in `stream` (after the warm-up one)."""
    return [m.value for m in await read_all(client, stream)][1:]


async def test_publish_async_waits_at_the_request_bound_and_a_timeout_sends_nothing(
    fresh_server: LiftbridgeServer, stream_name: str
) -> None:
    late: list[PendingAck] = []
    async with LiftbridgeClient([fresh_server.broker], publish_async_max_pending=3) as client:
        await warm(client, stream_name)

        async def one_more() -> None:
            late.append(await client.publish_async(b"3", stream=stream_name))

        async with anyio.create_task_group() as tasks:
            async with frozen(fresh_server):
                pending = [
                    await client.publish_async(b"%d" % i, stream=stream_name) for i in range(3)
                ]
                assert client.publish_in_flight.requests == 3
                # No room within its ack timeout: it raises and sends nothing.
                with anyio.fail_after(HANG_GUARD), pytest.raises(ErrorDeadlineExceeded) as caught:
                    await client.publish_async(b"refused", stream=stream_name, ack_timeout=0.3)
                assert caught.value.not_processed
                assert waiting(client) == 0
                tasks.start_soon(one_more)
                await wait_until(lambda: waiting(client) == 1, "the fourth publish waits")
                assert client.publish_in_flight.requests == 3
                assert not late
            # Thawed: the first three's acks make room for the fourth.
            with anyio.fail_after(HANG_GUARD):
                acks = [await p for p in pending]
        with anyio.fail_after(HANG_GUARD):
            acks.append(await late[0])
        assert [a.offset for a in acks] == [1, 2, 3, 4]
        assert await stored(client, stream_name) == [b"0", b"1", b"2", b"3"]
        assert client.publish_in_flight == (0, 0)


@pytest.mark.parametrize("how", ["publish_async", "publish_batch"])
async def test_acks_nobody_awaits_give_their_room_back_when_swept_at_their_timeout(
    fresh_server: LiftbridgeServer, stream_name: str, how: str
) -> None:
    # The warm-up ack's timeout lies beyond the hang guard: the sweeper
    # looks in time only if these publishes' earlier timeouts wake it.
    async with LiftbridgeClient(
        [fresh_server.broker], publish_async_max_pending=2, publish_async_ack_timeout=600
    ) as client:
        await warm(client, stream_name)
        async with frozen(fresh_server):
            # Never awaited: only the stream's sweeper settles them.
            if how == "publish_async":
                for value in (b"0", b"1"):
                    await client.publish_async(value, stream=stream_name, ack_timeout=0.3)
            else:
                await client.publish_batch([b"0", b"1"], stream=stream_name, ack_timeout=0.3)
            assert client.publish_in_flight.requests == 2
            await wait_until(
                lambda: client.publish_in_flight == (0, 0), "the timed-out acks give room back"
            )
            # The room is free: this one goes out without waiting.
            late = await client.publish_async(b"2", stream=stream_name)
            assert waiting(client) == 0
        with anyio.fail_after(HANG_GUARD):
            await late
        assert client.publish_in_flight == (0, 0)


async def test_the_byte_bound_holds_publishes_back_and_a_larger_message_goes_alone(
    fresh_server: LiftbridgeServer, stream_name: str
) -> None:
    small = b"s" * 300
    large = b"L" * 3000
    async with LiftbridgeClient(
        [fresh_server.broker], publish_async_max_pending_bytes=1000
    ) as client:
        await warm(client, stream_name)
        size = len(
            client.get_publish_request(small, stream=stream_name, correlation_id="x" * 32).encode()
        )
        assert 2 * size <= 1000 < 3 * size
        late: list[PendingAck] = []

        async def publish(value: bytes) -> None:
            late.append(await client.publish_async(value, stream=stream_name))

        async with anyio.create_task_group() as tasks, frozen(fresh_server):
            first = [await client.publish_async(small, stream=stream_name) for _ in range(2)]
            assert client.publish_in_flight == (2, 2 * size)
            tasks.start_soon(publish, large)
            await wait_until(lambda: waiting(client) == 1, "the large message waits")
            # A small one that would fit waits behind it: first come, first served.
            tasks.start_soon(publish, small)
            await wait_until(lambda: waiting(client) == 2, "the small one waits too")
            assert client.publish_in_flight == (2, 2 * size)
        with anyio.fail_after(HANG_GUARD):
            for item in first + late:
                await item
        assert await stored(client, stream_name) == [small, small, large, small]
        # Alone, a message larger than the byte bound is sent at once.
        with anyio.fail_after(HANG_GUARD):
            await (await client.publish_async(large, stream=stream_name))
        assert client.publish_in_flight == (0, 0)


async def test_flush_waits_for_every_publish_in_flight_and_honours_its_timeout(
    fresh_server: LiftbridgeServer, stream_name: str
) -> None:
    async with LiftbridgeClient([fresh_server.broker]) as client:
        await warm(client, stream_name)
        with anyio.fail_after(HANG_GUARD):
            await client.flush()  # nothing in flight: returns at once
        async with frozen(fresh_server):
            pending = [await client.publish_async(b"%d" % i, stream=stream_name) for i in range(20)]
            with anyio.fail_after(HANG_GUARD), pytest.raises(ErrorDeadlineExceeded, match="20"):
                await client.flush(timeout=0.3)
        # Nobody awaits the acks: flush alone waits for them.
        with anyio.fail_after(HANG_GUARD):
            await client.flush()
        assert all(p.done for p in pending)
        assert client.publish_in_flight == (0, 0)
        assert [(await p).offset for p in pending] == list(range(1, 21))


async def test_cancelling_publishes_that_wait_for_room_leaves_nothing_behind(
    fresh_server: LiftbridgeServer, stream_name: str
) -> None:
    async with LiftbridgeClient([fresh_server.broker], publish_async_max_pending=3) as client:
        await warm(client, stream_name)
        async with frozen(fresh_server):
            pending = [await client.publish_async(b"%d" % i, stream=stream_name) for i in range(3)]

            async def cancelled() -> None:
                await client.publish_async(b"cancelled", stream=stream_name)

            async with anyio.create_task_group() as tasks:
                for _ in range(50):
                    tasks.start_soon(cancelled)
                await wait_until(lambda: waiting(client) == 50, "50 publishes wait for room")
                tasks.cancel_scope.cancel()
            assert waiting(client) == 0
            assert client.publish_in_flight.requests == 3
        with anyio.fail_after(HANG_GUARD):
            await client.flush()
            assert [(await p).offset for p in pending] == [1, 2, 3]
        assert client.publish_in_flight == (0, 0)
        assert await stored(client, stream_name) == [b"0", b"1", b"2"]
        # The whole bound is free again.
        with anyio.fail_after(HANG_GUARD):
            more = [await client.publish_async(b"more", stream=stream_name) for _ in range(3)]
            assert [(await p).offset for p in more] == [4, 5, 6]


def rss() -> int:
    """This process's resident set size, in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.parametrize(
    "duration",
    [
        pytest.param(3.0, id="3s"),
        # The criterion: two minutes of callers trying (`-m slow`).
        pytest.param(120.0, id="2min", marks=[pytest.mark.slow, pytest.mark.minutes]),
    ],
)
async def test_a_frozen_broker_holds_publish_async_at_the_bound_in_bounded_memory(
    fresh_server: LiftbridgeServer, stream_name: str, duration: float
) -> None:
    bound = 1000
    pending: list[PendingAck] = []
    async with LiftbridgeClient(
        [fresh_server.broker],
        publish_async_max_pending=bound,
        # Nothing times out while frozen: every publish sent must be acked after.
        publish_async_ack_timeout=duration + 60,
    ) as client:
        await warm(client, stream_name)

        stopped = False

        async def caller(number: int) -> None:
            # Callers with deadlines of their own give up and try again: the
            # line of waiters keeps changing while the bound holds.
            while not stopped:
                with anyio.move_on_after(0.5 + number % 10 / 10):
                    pending.append(await client.publish_async(b"x" * 100, stream=stream_name))

        start = peak = rss()
        async with anyio.create_task_group() as callers, frozen(fresh_server):
            for number in range(bound + 200):
                callers.start_soon(caller, number)
            await wait_until(
                lambda: client.publish_in_flight.requests == bound, "the bound is reached"
            )
            end = anyio.current_time() + duration
            while anyio.current_time() < end:
                peak = max(peak, rss())
                assert client.publish_in_flight.requests == bound
                assert waiting(client) > 0
                # Every publish returned holds its room: none beyond the bound went out.
                assert len(pending) <= bound
                await anyio.sleep(0.2)
            # (A caller that is not waiting ends at its next publish.)
            stopped = True
            callers.cancel_scope.cancel()
        # Thawed: everything sent drains and is acknowledged.
        with anyio.fail_after(HANG_GUARD):
            await client.flush()
            offsets = [(await item).offset for item in pending]
        assert client.publish_in_flight == (0, 0)
        assert len(set(offsets)) == len(pending) > 0
        newest = (await client.get_partition_metadata(stream_name, 0)).newest_offset
        # (A caller cancelled while its message was half written still sent it.)
        assert newest >= len(pending)
    print(
        f"frozen {duration:.0f} s: {len(pending)} publishes sent at bound {bound}, "
        f"peak RSS {peak / 2**20:.1f} MiB (from {start / 2**20:.1f})"
    )
    # The bound, 200 MB, as growth: a test worker holds what the
    # tests before it loaded (a PyPy worker's JIT alone is over 200 MB, and a
    # CPython worker that ran mypy in-process was at 218 MB in a CI run).
    assert peak - start < 200 * 2**20
