"""One call, one budget: `RetryPolicy` bounds every public call with the server down.

A public call may retry at several levels (a publish retries, and each try
refreshes metadata, which retries too); the policy's attempts and `max_time`
bound the whole call, not each level.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any, Callable

import anyio
import pytest
from helpers import HANG_GUARD, aclosing

from lbwire.client import LiftbridgeClient
from lbwire.error import LiftbridgeError
from lbwire.retry import RetryPolicy
from lbwire.testing import LiftbridgeServer

pytestmark = pytest.mark.anyio

#: Many cheap attempts: with the server down they fail at once, so time, not
#: the attempt count, ends each call.
POLICY = RetryPolicy(attempts=1000, initial_backoff=0.02, max_backoff=0.05, max_time=0.6)
#: Allowance beyond max_time: the try under way when time runs out.
# A call that took several budgets (the bug these tests caught) still fails;
# 0.4 s failed once at the test command's own load (a load average of 7).
SLACK = 0.8


@pytest.fixture(scope="module")
def server() -> Iterator[LiftbridgeServer]:
    """A real server that ran and was killed: its port refuses connections."""
    with LiftbridgeServer() as server:
        server.kill()
        yield server


async def _subscribe(client: LiftbridgeClient) -> None:
    async with aclosing(client.subscribe("s")) as messages:
        async for _ in messages:
            break


async def _publish_bulk(client: LiftbridgeClient) -> None:
    request = client.get_publish_request(b"x", stream="s")
    async with aclosing(client.publish_bulk([request])) as acks:
        async for _ in acks:
            break


async def _publish_async(client: LiftbridgeClient) -> None:
    await (await client.publish_async(b"x", stream="s"))


CALLS: dict[str, Callable[[LiftbridgeClient], Awaitable[Any]]] = {
    "get_metadata": lambda c: c.get_metadata(),
    "get_metadata_of_groups": lambda c: c.get_metadata(streams=["s", "t"], groups=["g"]),
    "get_partition_metadata": lambda c: c.get_partition_metadata("s", 0),
    "create_stream": lambda c: c.create_stream("s"),
    "delete_stream": lambda c: c.delete_stream("s"),
    "pause_stream": lambda c: c.pause_stream("s"),
    "set_stream_readonly": lambda c: c.set_stream_readonly("s"),
    "publish": lambda c: c.publish(b"x", stream="s"),
    "publish_keyed": lambda c: c.publish(b"x", stream="s", key=b"k", partitioner=_first),
    "publish_to_subject": lambda c: c.publish_to_subject(b"x", "s"),
    "publish_async": _publish_async,
    "publish_bulk": _publish_bulk,
    "set_cursor": lambda c: c.set_cursor("s", 0, "c", 1),
    "get_cursor": lambda c: c.get_cursor("s", 0, "c"),
    "subscribe": _subscribe,
    "join_consumer_group": lambda c: c.join_consumer_group("g", "m", ["s"]),
    "leave_consumer_group": lambda c: c.leave_consumer_group("g", "m"),
    "fetch_consumer_group_assignments": lambda c: c.fetch_consumer_group_assignments(
        "g", "m", 0, coordinator="b"
    ),
    "report_consumer_group_coordinator": lambda c: c.report_consumer_group_coordinator(
        "g", "m", "b", 0
    ),
    "fetch_consumer_group_metadata": lambda c: c.fetch_consumer_group_metadata("g"),
    "get_consumer_group_metadata": lambda c: c.get_consumer_group_metadata("g"),
    "health": lambda c: c.health(),
}


def _first(stream: str, key: Any, value: bytes, count: int) -> int:
    return 0


class _Lag:
    """How long the event loop was late during a block (see `_timed`)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.elapsed = 0.0

    @property
    def bound(self) -> float:
        """The budget, its slack, and the time the loop could not run."""
        return POLICY.max_time + SLACK + self.seconds


#: How often `_timed`'s ticker wakes.
TICK = 0.01


@contextlib.asynccontextmanager
async def _timed() -> AsyncIterator[_Lag]:
    """Time a block, and how late a ticker beside it woke, in all.

    On a loaded machine the process waits for a CPU, and so does every timer
    of the call measured: that wait is allowed on top of the budget. A call
    that outlives its budget while the loop runs on time is not excused.
    """
    lag = _Lag()

    async def tick() -> None:
        while True:
            before = anyio.current_time()
            await anyio.sleep(TICK)
            lag.seconds += max(0.0, anyio.current_time() - before - TICK)

    started = anyio.current_time()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(tick)
        try:
            yield lag
        finally:
            lag.elapsed = anyio.current_time() - started
            tasks.cancel_scope.cancel()


@pytest.mark.parametrize("method", sorted(CALLS))
async def test_a_call_with_the_server_down_ends_within_the_retry_policy(
    server: LiftbridgeServer, method: str
) -> None:
    async with (
        LiftbridgeClient([server.broker], retry_policy=POLICY, resubscribe_wait_time=5.0) as client,
        _timed() as lag,
    ):
        with anyio.fail_after(HANG_GUARD), pytest.raises(LiftbridgeError):
            await CALLS[method](client)
    assert lag.elapsed <= lag.bound, f"{method} took {lag.elapsed:.1f} s (lag {lag.seconds:.1f} s)"


WARM_CALLS = ["publish", "publish_keyed", "set_cursor", "get_cursor", "get_partition_metadata"]


async def test_calls_of_a_client_that_knew_the_server_end_within_the_retry_policy(
    fresh_server: LiftbridgeServer, stream_name: str
) -> None:
    # The calls that refresh metadata inside each try (the stream and its
    # leader are cached) took several budgets before.
    async with LiftbridgeClient([fresh_server.broker]) as setup:
        await setup.create_stream(stream_name, wait_for_stream=True)
        await setup.wait_for_cursors()
        await setup.publish(b"x", stream=stream_name)
        await setup.set_cursor(stream_name, 0, "c", 0)
    async with LiftbridgeClient([fresh_server.broker], retry_policy=POLICY) as client:
        # Bounds of the set-up's own, not the policy's 0.6 s: a loaded machine
        # can take longer than that to answer, and the calls below are the test.
        await client.wait_for_stream(stream_name, timeout=HANG_GUARD)
        await client.wait_for_cursors(timeout=HANG_GUARD)
        await fresh_server.akill()
        took = {}
        for method in WARM_CALLS:
            call = CALLS[method]
            async with _timed() as lag:
                with anyio.fail_after(HANG_GUARD), pytest.raises(LiftbridgeError):
                    await call(_Renamed(client, stream_name))
            took[method] = lag
    late = {
        m: (round(t.elapsed, 1), round(t.seconds, 1))
        for m, t in took.items()
        if t.elapsed > t.bound
    }
    assert not late, f"took (seconds, loop lag): {late}"


class _Renamed:
    """The client, with the calls of CALLS aimed at `stream` instead of "s"."""

    def __init__(self, client: LiftbridgeClient, stream: str) -> None:
        self._client = client
        self._stream = stream

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def renamed(*args: Any, **kwargs: Any) -> Any:
            args = tuple(self._stream if a == "s" else a for a in args)
            if kwargs.get("stream") == "s":
                kwargs["stream"] = self._stream
            return method(*args, **kwargs)

        return renamed
