"""Reverse subscriptions: offsets N..0 on the newest server, a clear error on v1.9.0.

The suite runs against one server generation at a time; each test states
what each generation does (``by_generation``). The newest server reads
backwards and ends the call after the oldest message; v1.9.0 ignores the
`reverse` field and would stream forwards, so lbwire must raise
`ErrorReverseUnsupported` before delivering any message out of order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from client_support import HANG_GUARD, publish_values, read_all
from helpers import aclosing, wait_until
from helpers.restarts import publish_after_restart
from helpers.servers import by_generation

from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorInvalidArgument, ErrorReverseUnsupported
from lbwire.testing import LiftbridgeServer
from lbwire.types import Message, StartPosition, StopPosition

pytestmark = pytest.mark.anyio

VALUES = [b"r0", b"r1", b"r2", b"r3", b"r4"]


@pytest.fixture
async def five_messages(client: LiftbridgeClient, stream: str) -> str:
    await publish_values(client, stream, VALUES)
    return stream


async def read_reverse(client: LiftbridgeClient, stream: str, **kwargs: Any) -> list[Message]:
    """Every message of a reverse subscription until it ends by itself.

    Whatever arrives before an error is kept in `read_reverse.delivered`.
    """
    received: list[Message] = []
    read_reverse.delivered = received  # type: ignore[attr-defined]
    with anyio.fail_after(HANG_GUARD):
        async with aclosing(client.subscribe(stream, reverse=True, **kwargs)) as messages:
            async for message in messages:
                received.append(message)
    return received


async def offsets_or_unsupported(
    server: LiftbridgeServer, client: LiftbridgeClient, stream: str, **kwargs: Any
) -> list[int] | None:
    """The offsets on the newest server; None (after checking the error) on v1.9.0."""
    if by_generation(server, v1_9_0=True, newest=False):
        with pytest.raises(ErrorReverseUnsupported, match="does not support reverse"):
            await read_reverse(client, stream, **kwargs)
        assert read_reverse.delivered == []  # type: ignore[attr-defined]
        return None
    return [m.offset for m in await read_reverse(client, stream, **kwargs)]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({}, [4, 3, 2, 1, 0], id="default-new-only"),
        pytest.param({"start_position": StartPosition.NEW_ONLY}, [4, 3, 2, 1, 0], id="new-only"),
        pytest.param({"start_position": StartPosition.LATEST}, [4, 3, 2, 1, 0], id="latest"),
        pytest.param({"start_position": StartPosition.EARLIEST}, [0], id="earliest"),
        pytest.param({"start_offset": 2}, [2, 1, 0], id="offset"),
        pytest.param({"start_offset": 99}, [4, 3, 2, 1, 0], id="offset-beyond-newest"),
        pytest.param({"start_offset": 0}, [0], id="offset-zero"),
    ],
)
async def test_reverse_reads_from_the_start_position_down_to_the_oldest(
    liftbridge_server: LiftbridgeServer,
    client: LiftbridgeClient,
    five_messages: str,
    kwargs: dict[str, Any],
    expected: list[int],
) -> None:
    got = await offsets_or_unsupported(liftbridge_server, client, five_messages, **kwargs)
    assert got == by_generation(liftbridge_server, v1_9_0=None, newest=expected)


async def test_reverse_from_a_timestamp_starts_at_the_first_message_at_or_after_it(
    liftbridge_server: LiftbridgeServer, client: LiftbridgeClient, five_messages: str
) -> None:
    stored = await read_all(client, five_messages)
    between = (stored[1].timestamp + stored[2].timestamp) / 2 / 1e9
    got = await offsets_or_unsupported(
        liftbridge_server, client, five_messages, start_timestamp=between
    )
    assert got == by_generation(liftbridge_server, v1_9_0=None, newest=[2, 1, 0])


async def test_reverse_delivers_values_newest_first(
    liftbridge_server: LiftbridgeServer, client: LiftbridgeClient, five_messages: str
) -> None:
    if by_generation(liftbridge_server, v1_9_0=True, newest=False):
        with pytest.raises(ErrorReverseUnsupported):
            await read_reverse(client, five_messages)
        return
    messages = await read_reverse(client, five_messages)
    assert [m.value for m in messages] == VALUES[::-1]
    assert {(m.stream, m.partition) for m in messages} == {(five_messages, 0)}


async def test_reverse_on_an_empty_partition_yields_nothing_and_ends(
    liftbridge_server: LiftbridgeServer, client: LiftbridgeClient, stream: str
) -> None:
    got = await offsets_or_unsupported(liftbridge_server, client, stream)
    assert got == by_generation(liftbridge_server, v1_9_0=None, newest=[])
    assert (await client.get_metadata(stream)).metadata  # the client goes on


async def test_reverse_stop_offset_ends_after_that_offset_inclusive(
    liftbridge_server: LiftbridgeServer, client: LiftbridgeClient, five_messages: str
) -> None:
    got = await offsets_or_unsupported(liftbridge_server, client, five_messages, stop_offset=2)
    assert got == by_generation(liftbridge_server, v1_9_0=None, newest=[4, 3, 2])


async def test_reverse_stop_offset_zero_reads_everything(
    liftbridge_server: LiftbridgeServer, client: LiftbridgeClient, five_messages: str
) -> None:
    got = await offsets_or_unsupported(
        liftbridge_server, client, five_messages, start_offset=3, stop_offset=0
    )
    assert got == by_generation(liftbridge_server, v1_9_0=None, newest=[3, 2, 1, 0])


async def test_reverse_stop_timestamp_ends_before_older_messages(
    liftbridge_server: LiftbridgeServer, client: LiftbridgeClient, five_messages: str
) -> None:
    stored = await read_all(client, five_messages)
    # Messages received at or after the stop time are delivered.
    stop = (stored[2].timestamp + stored[3].timestamp) / 2 / 1e9
    got = await offsets_or_unsupported(
        liftbridge_server, client, five_messages, stop_timestamp=stop
    )
    assert got == by_generation(liftbridge_server, v1_9_0=None, newest=[4, 3])


async def test_reverse_on_the_newest_server_ends_with_no_error_twice_in_a_row(
    liftbridge_server: LiftbridgeServer, client: LiftbridgeClient, five_messages: str
) -> None:
    # The second subscription uses what the first learnt of the broker.
    first = await offsets_or_unsupported(liftbridge_server, client, five_messages, start_offset=1)
    second = await offsets_or_unsupported(liftbridge_server, client, five_messages, start_offset=1)
    assert first == second == by_generation(liftbridge_server, v1_9_0=None, newest=[1, 0])


async def test_reverse_with_resume_is_refused(client: LiftbridgeClient, five_messages: str) -> None:
    with pytest.raises(ErrorInvalidArgument, match="RESUME cannot be combined with reverse"):
        await read_reverse(
            client, five_messages, start_position=StartPosition.RESUME, cursor_id="c"
        )


@pytest.mark.parametrize("stop", [StopPosition.STOP_LATEST, StopPosition.STOP_OFFSET])
async def test_reverse_with_a_stop_position_but_no_stop_value_is_refused(
    client: LiftbridgeClient, five_messages: str, stop: StopPosition
) -> None:
    with pytest.raises(ErrorInvalidArgument, match="reverse=True"):
        await read_reverse(client, five_messages, stop_position=stop)


async def test_reverse_unsupported_is_an_invalid_argument_error() -> None:
    assert issubclass(ErrorReverseUnsupported, ErrorInvalidArgument)
    assert issubclass(ErrorReverseUnsupported, ValueError)


@pytest.fixture
def server() -> Iterator[LiftbridgeServer]:
    """A server of the run's generation with no stream but the test's (no cursors
    stream): nothing a probe could ask, so only the order check can tell."""
    with LiftbridgeServer(cursors_partitions=0) as node:
        yield node


async def test_without_a_decisive_probe_the_order_check_stops_before_a_message_out_of_order(
    server: LiftbridgeServer, stream_name: str
) -> None:
    received: list[Message] = []
    failure: list[BaseException] = []
    async with LiftbridgeClient([server.broker]) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
        # One message: reading it from the oldest looks the same either way.
        await publish_values(client, stream_name, [b"only"])

        async def consume() -> None:
            subscription = client.subscribe(
                stream_name, reverse=True, start_position=StartPosition.EARLIEST
            )
            try:
                async with aclosing(subscription) as messages:
                    async for message in messages:
                        received.append(message)
            except ErrorReverseUnsupported as exc:
                failure.append(exc)

        with anyio.fail_after(HANG_GUARD):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await wait_until(lambda: bool(received), "the oldest message arrives")
                if by_generation(server, v1_9_0=True, newest=False):
                    # v1.9.0 streams forwards: the next message gives it away.
                    await publish_values(client, stream_name, [b"later"])
    assert [m.offset for m in received] == [0]
    assert len(failure) == by_generation(server, v1_9_0=1, newest=0)


class ResubscribeRecorder:
    """An observer that records `on_resubscribe` (the other events are ignored)."""

    def __init__(self) -> None:
        self.resubscribes: list[tuple[str, int, BaseException]] = []

    def on_retry(self, method: str, attempt: int, error: BaseException) -> None:
        pass

    def on_reconnect(self, broker: str) -> None:
        pass

    def on_resubscribe(self, stream: str, partition: int, error: BaseException) -> None:
        self.resubscribes.append((stream, partition, error))

    def on_ack(self, stream: str, partition: int, latency: float) -> None:
        pass


async def test_reverse_subscription_resumes_through_a_restart_and_reports_it(
    fresh_server: LiftbridgeServer, stream_name: str
) -> None:
    # More than the call's flow-control window (4 MiB), so the server still
    # has messages to send when it is killed; the restarted one reports the
    # stream missing until it has loaded it (the rule forward subscriptions
    # follow: transient for a subscription it had confirmed).
    count = 96
    values = [bytes([i]) * 64 * 1024 for i in range(count)]
    recorder = ResubscribeRecorder()
    async with LiftbridgeClient([fresh_server.broker]) as client:
        client.observer = recorder
        await client.create_stream(stream_name, wait_for_stream=True)
        await publish_values(client, stream_name, values)
        if by_generation(fresh_server, v1_9_0=True, newest=False):
            with pytest.raises(ErrorReverseUnsupported):
                await read_reverse(client, stream_name)
            return
        received: list[Message] = []
        with anyio.fail_after(3 * HANG_GUARD):
            async with anyio.create_task_group() as tg:
                subscription = client.subscribe(stream_name, reverse=True)
                async with aclosing(subscription) as messages:
                    async for message in messages:
                        received.append(message)
                        if len(received) == 1:
                            await fresh_server.akill()
                            await fresh_server.astart()
                            # Resuming meets "no such stream" while the server
                            # loads, then "segment not found" until a publish
                            # starts the partition again.
                            tg.start_soon(publish_after_restart, client, stream_name, b"later")
    assert [m.offset for m in received] == list(range(count - 1, -1, -1))
    assert [m.value for m in received] == values[::-1]
    assert [(s, p) for s, p, _ in recorder.resubscribes] == [(stream_name, 0)]
