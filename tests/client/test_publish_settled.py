"""`publish(settle=True)`: each publish ends stored exactly once, or with `ErrorNotStored`.

Real servers and real faults: a SIGSTOPped server lets the ack time out while
the request waits in its socket, and is then let go (the original is stored,
late: settled as stored); a frozen server SIGKILLed loses the request, and
another producer takes its offset after the restart (settled as not stored,
or stored when the resend came first); a server SIGKILLed and restarted
holds the record at the fence (another producer's, or the publish's own)
past its high watermark, and delivers it only once settling appended a
nudge; three producers publish settled across a SIGKILL and restart. Every
test then reads the partition from the earliest offset and checks the log
against the outcome.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import AsyncIterator, Dict, List, Tuple

import anyio
import pytest
from helpers import HANG_GUARD, wait_until
from helpers.frozen import all_threads_stopped
from helpers.restarts import withheld_after_restart
from helpers.settled import Resends

from lbwire.client import LiftbridgeClient
from lbwire.error import (
    ErrorAckTimeout,
    ErrorInvalidArgument,
    ErrorNotStored,
    ErrorUnsettled,
    LiftbridgeError,
)
from lbwire.retry import RetryPolicy
from lbwire.testing import LiftbridgeServer
from lbwire.types import Ack, AckPolicy, StartPosition, StopPosition

pytestmark = pytest.mark.anyio

SETTLE_HEADER = "lbwire-settle-id"

#: Settling outlasts a restart (the server reloads its streams).
PATIENT = RetryPolicy(attempts=200, initial_backoff=0.2, max_backoff=1.0, max_time=25.0)


async def read_ids(client: LiftbridgeClient, stream: str) -> Dict[int, str]:
    """Every message of partition 0, from the earliest: offset to settle id ("" if none)."""
    newest = (await client.get_partition_metadata(stream, 0)).newest_offset
    found: Dict[int, str] = {}
    if newest < 0:
        return found
    async for message in client.subscribe(
        stream,
        start_position=StartPosition.EARLIEST,
        stop_position=StopPosition.STOP_OFFSET,
        stop_offset=newest,
    ):
        found[message.offset] = message.headers.get(SETTLE_HEADER, b"").decode()
    return found


async def test_settled_publishes_are_stored_once_at_the_next_offsets(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await client.create_stream(
        stream_name, optimistic_concurrency_control=True, wait_for_stream=True
    )
    await client.publish(b"plain", stream=stream_name)  # not settled, no fence needed
    acks = [await client.publish(b"x", stream=stream_name, settle=True) for _ in range(5)]
    assert [ack.offset for ack in acks if ack is not None] == [1, 2, 3, 4, 5]
    ids = await read_ids(client, stream_name)
    assert [ids[o] for o in range(1, 6)] == [ack.correlationId for ack in acks if ack]
    with pytest.raises(ErrorInvalidArgument, match="already used"):
        await client.publish(b"y", stream=stream_name, settle=True, correlation_id=ids[1])
    with pytest.raises(ErrorInvalidArgument, match=r"AckPolicy\.NONE"):
        await client.publish(b"y", stream=stream_name, settle=True, ack_policy=AckPolicy.NONE)
    assert len(await read_ids(client, stream_name)) == 6


async def test_a_taken_offset_is_not_stored_and_a_stale_one_is_followed(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await client.create_stream(
        stream_name, optimistic_concurrency_control=True, wait_for_stream=True
    )
    assert (await client.publish(b"a", stream=stream_name, settle=True)).offset == 0  # type: ignore[union-attr]
    with pytest.raises(ErrorNotStored) as raised:
        await client.publish(b"b", stream=stream_name, settle=True, expected_offset=0)
    assert raised.value.offset == 0
    assert raised.value.not_processed
    # Not stored: its id may be published again.
    again = await client.publish(
        b"b", stream=stream_name, settle=True, correlation_id=raised.value.correlation_id
    )
    assert again is not None
    assert again.offset == 1
    # Another producer moves the partition on: the next settled publish
    # follows it to the new next offset.
    async with LiftbridgeClient(client.broker_seeds) as other:
        await other.publish(b"other", stream=stream_name)
    ack = await client.publish(b"c", stream=stream_name, settle=True)
    assert ack is not None
    assert ack.offset == 3
    ids = await read_ids(client, stream_name)
    assert [ids[1], ids[3]] == [raised.value.correlation_id, ack.correlationId]


async def test_a_stream_without_concurrency_control_is_refused_after_its_first_message(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await client.create_stream(stream_name, wait_for_stream=True)
    ack = await client.publish(b"first", stream=stream_name, settle=True)
    assert ack is not None
    assert ack.offset == 0
    with pytest.raises(ErrorInvalidArgument, match="no optimistic concurrency control"):
        await client.publish(b"second", stream=stream_name, settle=True)
    assert len(await read_ids(client, stream_name)) == 1


@contextlib.asynccontextmanager
async def settling_on_a_frozen_server(
    server: LiftbridgeServer, stream: str, value: bytes
) -> AsyncIterator[Tuple[LiftbridgeClient, List[object]]]:
    """A settled publish to a SIGSTOPped server, whose ack timed out: settling has begun.

    Yields the client and the list the publish's outcome (its Ack or error)
    is appended to when it ends, which is after the block. The server is
    SIGCONTed at the end (if it still runs).
    """
    resends = Resends()
    async with LiftbridgeClient([server.broker], retry_policy=PATIENT) as client:
        client.observer = resends
        await client.create_stream(
            stream, optimistic_concurrency_control=True, wait_for_stream=True
        )
        await client.publish(b"before", stream=stream, settle=True)  # offset 0
        pid = server.pid
        assert pid is not None
        outcome: List[object] = []

        async def publish() -> None:
            try:
                outcome.append(
                    await client.publish(
                        value,
                        stream=stream,
                        settle=True,
                        ack_timeout=1.0,
                        correlation_id=value.decode(),
                    )
                )
            except LiftbridgeError as exc:
                outcome.append(exc)

        os.kill(pid, signal.SIGSTOP)
        try:
            with anyio.fail_after(HANG_GUARD * 2):
                await wait_until(lambda: all_threads_stopped(pid), "the server is stopped")
                async with anyio.create_task_group() as tg:
                    tg.start_soon(publish)
                    # The original went out and its ack timed out: settling began.
                    await wait_until(lambda: bool(resends.errors), "a resend")
                    assert isinstance(resends.errors[0], ErrorAckTimeout)
                    yield client, outcome
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


async def test_an_ack_lost_to_a_frozen_server_is_settled_as_stored_once(
    fresh_server: LiftbridgeServer, stream_name: str
) -> None:
    async with settling_on_a_frozen_server(fresh_server, stream_name, b"frozen") as (
        client,
        outcome,
    ):
        # Let go, the server reads the original and stores it, late.
        os.kill(fresh_server.pid or 0, signal.SIGCONT)
    ack = outcome[0]
    assert isinstance(ack, Ack), ack
    assert ack.offset == 1
    async with LiftbridgeClient([fresh_server.broker]) as client:
        ids = await read_ids(client, stream_name)
    assert ack.correlationId == ids[1] == "frozen"
    assert len(ids) == 2


async def test_a_request_lost_with_its_server_is_settled_by_the_log(
    fresh_server: LiftbridgeServer, stream_name: str
) -> None:
    async with settling_on_a_frozen_server(fresh_server, stream_name, b"lost") as (
        client,
        outcome,
    ):
        # The request sits unread in the frozen server's socket: killed, the
        # server never stores it.
        await fresh_server.akill()
        await fresh_server.astart()
        # Another producer takes offset 1, unless a resend came first.
        async with LiftbridgeClient([fresh_server.broker], retry_policy=PATIENT) as other:
            while True:
                try:
                    await other.publish(b"other", stream=stream_name, expected_offset=1)
                    break
                except LiftbridgeError:
                    if outcome:
                        break  # the settled publish took it first
    async with LiftbridgeClient([fresh_server.broker], retry_policy=PATIENT) as client:
        ids = await read_ids(client, stream_name)
    result = outcome[0]
    assert not isinstance(result, ErrorUnsettled), result
    if isinstance(result, ErrorNotStored):
        assert result.offset == 1
        assert result.correlation_id == "lost"
        assert ids[1] == ""  # the other producer's
        assert "lost" not in ids.values()
    else:
        assert isinstance(result, Ack), result
        assert result.offset == 1
        assert result.correlationId == ids[1] == "lost"
    assert len(ids) == 2


async def test_a_message_an_earlier_run_stored_is_settled_as_stored_when_refused(
    fresh_server: LiftbridgeServer, stream_name: str
) -> None:
    # A program dies right after its settled publish went out; run again, it
    # publishes the same message (id and fence): refused, as the first copy
    # holds the fence, which reading the fence shows to be its own.
    with anyio.CancelScope() as died:
        async with settling_on_a_frozen_server(fresh_server, stream_name, b"again"):
            died.cancel()  # the publish is under way: the program dies
    async with LiftbridgeClient([fresh_server.broker], retry_policy=PATIENT) as client:

        async def stored() -> bool:
            return (await client.get_partition_metadata(stream_name, 0)).newest_offset >= 1

        await wait_until(stored, "the first run's message is stored")
        ack = await client.publish(
            b"again", stream=stream_name, settle=True, expected_offset=1, correlation_id="again"
        )
        assert ack is not None
        assert (ack.offset, ack.correlationId) == (1, "again")
        ids = await read_ids(client, stream_name)
    assert ids[1] == "again"
    assert len(ids) == 2


@pytest.mark.parametrize("fence", ["followed", "expected", "own"])
async def test_a_publish_fenced_at_a_record_a_restarted_server_withholds_is_settled(
    fresh_server: LiftbridgeServer, stream_name: str, fence: str
) -> None:
    # After a SIGKILL the restarted server's high watermark is the one it
    # last checkpointed, behind its log, and it delivers nothing past it
    # until a message is appended. A settled publish fenced at a record held
    # there is refused and must read that record to learn whose it is: with
    # no other writer to append, the settler has to make the server deliver
    # it. The record is another producer's, stored just before the kill, at
    # the offset the client's settler expects next ("followed") or at the
    # caller's expected_offset ("expected"); or it is the publish's own
    # copy, which a program's earlier run stored ("own").
    async with (
        LiftbridgeClient([fresh_server.broker], retry_policy=PATIENT) as client,
        LiftbridgeClient([fresh_server.broker], retry_policy=PATIENT) as other,
    ):
        await client.create_stream(
            stream_name, optimistic_concurrency_control=True, wait_for_stream=True
        )
        acks: List[Ack] = []

        async def publish() -> int:
            mine = await client.publish(b"mine", stream=stream_name, settle=True)
            assert mine is not None
            acks.append(mine)
            if fence == "own":
                return mine.offset
            # The client's settler expects the offset after its own next:
            # the other producer takes it.
            ack = await other.publish(b"other", stream=stream_name)
            assert ack is not None
            return ack.offset

        withheld = await withheld_after_restart(fresh_server, other, stream_name, publish)
        with anyio.fail_after(HANG_GUARD * 2):
            if fence == "own":
                # Run again (`other` plays the program's next run), it
                # publishes the same message at the same fence.
                again = await other.publish(
                    b"mine",
                    stream=stream_name,
                    settle=True,
                    expected_offset=withheld,
                    correlation_id=acks[-1].correlationId,
                )
                assert again is not None
                assert (again.offset, again.correlationId) == (withheld, acks[-1].correlationId)
            elif fence == "expected":
                with pytest.raises(ErrorNotStored) as refused:
                    await client.publish(
                        b"after", stream=stream_name, settle=True, expected_offset=withheld
                    )
                assert refused.value.offset == withheld
            else:
                # Refused at the other's record, it follows to the next offset.
                ack = await client.publish(b"after", stream=stream_name, settle=True)
                assert ack is not None
                assert ack.offset > withheld
                acks.append(ack)
        ids = await read_ids(client, stream_name)
    if fence != "own":
        assert ids[withheld] == ""  # the other producer's
    # Each acked publish is stored once, where its ack says; no other is.
    assert {ack.offset: ack.correlationId for ack in acks} == {
        offset: settle_id for offset, settle_id in ids.items() if settle_id
    }


async def test_settled_publishes_of_three_producers_across_a_server_kill_end_stored_once_or_not(
    fresh_server: LiftbridgeServer, stream_name: str
) -> None:
    # Three producers publish settled to one partition, each its own client,
    # while the server is SIGKILLed and restarted on its data. A publish in
    # flight at the kill may be stored with its ack lost; the restarted
    # server holds the newest records past its high watermark, and each
    # producer's next fence may be one of them (its own stored copy, or
    # another's record): settling reads the fence, and must not wait for a
    # writer that appends, as every producer may be settling so.
    outcomes: Dict[str, object] = {}
    restarted = anyio.Event()

    async def producer(name: str) -> None:
        async with LiftbridgeClient([fresh_server.broker], retry_policy=PATIENT) as client:
            after = 0
            while after < 10:
                settle_id = f"{name}-{len(outcomes)}"
                try:
                    outcomes[settle_id] = await client.publish(
                        b"x", stream=stream_name, settle=True, correlation_id=settle_id
                    )
                except LiftbridgeError as exc:
                    outcomes[settle_id] = exc
                if restarted.is_set():
                    after += 1

    async with LiftbridgeClient([fresh_server.broker], retry_policy=PATIENT) as client:
        await client.create_stream(
            stream_name, optimistic_concurrency_control=True, wait_for_stream=True
        )
        with anyio.fail_after(HANG_GUARD * 3):
            async with anyio.create_task_group() as tg:
                for name in "abc":
                    tg.start_soon(producer, name)
                await wait_until(lambda: len(outcomes) >= 30, "30 settled publishes")
                fresh_server.kill()
                await fresh_server.astart()
                restarted.set()
        ids = await read_ids(client, stream_name)
    acked = {}
    for settle_id, outcome in outcomes.items():
        if isinstance(outcome, Ack):
            acked[outcome.offset] = settle_id
        else:
            # Not stored, and it says so: another message holds its fence.
            # (Not ErrorNotFound: while the restarted server loads the stream
            # the fence is looked up again.)
            assert isinstance(outcome, ErrorNotStored), outcome
    # Each acked publish is stored once, where its ack says; no other is.
    assert acked == {offset: settle_id for offset, settle_id in ids.items() if settle_id}
