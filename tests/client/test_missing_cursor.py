"""StartPosition.RESUME when the cursor is missing: warned about, and the caller's choice.

Liftbridge answers FetchCursor with -1 for a cursor never stored, and may do
so for one it had stored (after a restart its cursors partition can read
empty), so RESUME cannot tell the two apart: it logs a warning and starts
where `missing_cursor` says (gufo-liftbridge's offset 0 by default).
"""

from __future__ import annotations

import logging

import anyio
import pytest
from client_support import HANG_GUARD, collect, publish_values, read_all
from helpers import aclosing, wait_until

from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorCursorNotFound, ErrorInvalidArgument, ErrorNotFound
from lbwire.types import Message, StartPosition, StopPosition

pytestmark = pytest.mark.anyio

CURSOR = "never-stored"


@pytest.fixture
async def three_messages(client: LiftbridgeClient, stream: str) -> str:
    await publish_values(client, stream, [b"m0", b"m1", b"m2"])
    return stream


def resume(client: LiftbridgeClient, stream: str, **kwargs: object) -> object:
    return client.subscribe(
        stream,
        start_position=StartPosition.RESUME,
        cursor_id=CURSOR,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_default_starts_at_the_first_message_and_warns(
    client: LiftbridgeClient, three_messages: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="lbwire"):
        messages = await collect(resume(client, three_messages), limit=3)
    assert [m.offset for m in messages] == [0, 1, 2]
    (record,) = [r for r in caplog.records if "No cursor" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert CURSOR in record.getMessage()
    assert "EARLIEST" in record.getMessage()


async def test_earliest_starts_at_the_first_message(
    client: LiftbridgeClient, three_messages: str
) -> None:
    messages = await read_all(
        client,
        three_messages,
        start_position=StartPosition.RESUME,
        cursor_id=CURSOR,
        missing_cursor=StartPosition.EARLIEST,
    )
    assert [m.offset for m in messages] == [0, 1, 2]


async def test_latest_starts_at_the_newest_message(
    client: LiftbridgeClient, three_messages: str
) -> None:
    messages = await collect(
        resume(client, three_messages, missing_cursor=StartPosition.LATEST), limit=1
    )
    assert [m.offset for m in messages] == [2]


async def test_new_only_starts_after_the_newest_message(
    client: LiftbridgeClient, three_messages: str
) -> None:
    received: list[Message] = []
    subscribed = anyio.Event()

    async def consume() -> None:
        async with aclosing(
            resume(client, three_messages, missing_cursor=StartPosition.NEW_ONLY)
        ) as messages:
            subscribed.set()
            async for message in messages:
                received.append(message)
                return

    async def published_and_received() -> bool:
        # NEW_ONLY may skip a publish made while the call is set up: publish
        # one message per round until one arrives.
        if not received:
            await client.publish(b"new", stream=three_messages)
        return bool(received)

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await subscribed.wait()
            await wait_until(published_and_received, "a new message arrives", interval=0.05)
    assert received[0].offset >= 3
    assert received[0].value == b"new"


async def test_none_raises_cursor_not_found(client: LiftbridgeClient, three_messages: str) -> None:
    with pytest.raises(ErrorCursorNotFound, match=CURSOR) as info:
        await collect(resume(client, three_messages, missing_cursor=None))
    assert isinstance(info.value, ErrorNotFound)


async def test_a_stored_cursor_ignores_missing_cursor(
    client: LiftbridgeClient, three_messages: str, caplog: pytest.LogCaptureFixture
) -> None:
    await client.set_cursor(three_messages, 0, CURSOR, 0)
    with caplog.at_level(logging.WARNING, logger="lbwire"):
        messages = await read_all(
            client,
            three_messages,
            start_position=StartPosition.RESUME,
            cursor_id=CURSOR,
            missing_cursor=None,
            stop_position=StopPosition.STOP_LATEST,
        )
    assert [m.offset for m in messages] == [1, 2]
    assert not [r for r in caplog.records if "No cursor" in r.getMessage()]


@pytest.mark.parametrize("choice", [StartPosition.OFFSET, StartPosition.RESUME, 7])
async def test_other_choices_raise_invalid_argument(
    client: LiftbridgeClient, stream: str, choice: object
) -> None:
    with pytest.raises(ErrorInvalidArgument, match="missing_cursor"):
        await collect(resume(client, stream, missing_cursor=choice))
