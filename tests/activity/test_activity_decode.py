"""Decoding activity events and checking the reader's arguments, without a server.

The server-backed tests cover each kind as the server writes it; these cover
what it writes only in odd cases (details missing) or never (a value that is
not an event), and the errors raised before anything is sent.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest

from lbwire import wire
from lbwire.activity import (
    ActivityEvent,
    ActivityStreamOp,
    ConsumerJoined,
    ConsumerLeft,
    StreamCreated,
    StreamDeleted,
    StreamPaused,
    StreamReadonlySet,
    StreamResumed,
    UnknownActivity,
    decode_activity,
)
from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorInvalidArgument
from lbwire.types import Message, StartPosition

OFFSET, ID, TIMESTAMP = 7, 41, 1_700_000_000_000_000_000


def stored(event: wire.ActivityStreamEvent) -> Message:
    """`event` as read from ``__activity`` at OFFSET."""
    return Message(event.encode(), "activity", OFFSET, TIMESTAMP, b"", 0, {}, "__activity")


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            wire.ActivityStreamEvent(
                op=ActivityStreamOp.CREATE_STREAM,
                createStreamOp=wire.CreateStreamOp(stream="s", partitions=[0, 1]),
            ),
            StreamCreated(OFFSET, ID, TIMESTAMP, "s", (0, 1)),
        ),
        (
            wire.ActivityStreamEvent(
                op=ActivityStreamOp.DELETE_STREAM, deleteStreamOp=wire.DeleteStreamOp(stream="s")
            ),
            StreamDeleted(OFFSET, ID, TIMESTAMP, "s"),
        ),
        (
            wire.ActivityStreamEvent(
                op=ActivityStreamOp.PAUSE_STREAM,
                pauseStreamOp=wire.PauseStreamOp(stream="s", partitions=[1], resumeAll=True),
            ),
            StreamPaused(OFFSET, ID, TIMESTAMP, "s", (1,), True),
        ),
        (
            wire.ActivityStreamEvent(
                op=ActivityStreamOp.RESUME_STREAM,
                resumeStreamOp=wire.ResumeStreamOp(stream="s", partitions=[2]),
            ),
            StreamResumed(OFFSET, ID, TIMESTAMP, "s", (2,)),
        ),
        (
            wire.ActivityStreamEvent(
                op=ActivityStreamOp.SET_STREAM_READONLY,
                setStreamReadonlyOp=wire.SetStreamReadonlyOp(stream="s", partitions=[0]),
            ),
            StreamReadonlySet(OFFSET, ID, TIMESTAMP, "s", (0,), False),
        ),
        (
            wire.ActivityStreamEvent(
                op=ActivityStreamOp.JOIN_CONSUMER_GROUP,
                joinConsumerGroupOp=wire.JoinConsumerGroupOp(
                    groupId="g", consumerId="c", streams=["s", "t"]
                ),
            ),
            ConsumerJoined(OFFSET, ID, TIMESTAMP, "g", "c", ("s", "t")),
        ),
        (
            wire.ActivityStreamEvent(
                op=ActivityStreamOp.LEAVE_CONSUMER_GROUP,
                leaveConsumerGroupOp=wire.LeaveConsumerGroupOp(
                    groupId="g", consumerId="c", expired=True
                ),
            ),
            ConsumerLeft(OFFSET, ID, TIMESTAMP, "g", "c", True),
        ),
    ],
    ids=lambda value: type(value).__name__,
)
def test_each_kind_decodes_to_its_class(
    event: wire.ActivityStreamEvent, expected: ActivityEvent
) -> None:
    event.id = ID

    decoded = decode_activity(stored(event))

    assert decoded == expected
    assert type(decoded).op == event.op  # type: ignore[attr-defined]


def test_a_known_kind_without_details_gets_the_protobuf_defaults() -> None:
    event = wire.ActivityStreamEvent(id=ID, op=ActivityStreamOp.PAUSE_STREAM)

    assert decode_activity(stored(event)) == StreamPaused(OFFSET, ID, TIMESTAMP, "", (), False)


def test_an_unknown_kind_keeps_its_op_and_bytes() -> None:
    message = stored(wire.ActivityStreamEvent(id=ID, op=99))

    assert decode_activity(message) == UnknownActivity(OFFSET, ID, TIMESTAMP, 99, message.value)


def test_a_value_that_is_no_event_is_skipped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    message = Message(b"\xff\xff", "activity", OFFSET, TIMESTAMP, b"", 0, {}, "__activity")

    with caplog.at_level(logging.WARNING, logger="lbwire.activity"):
        assert decode_activity(message) is None

    assert f"offset {OFFSET}" in caplog.text


def test_events_are_immutable_and_hashable() -> None:
    event = StreamCreated(OFFSET, ID, TIMESTAMP, "s", (0,))

    with pytest.raises(dataclasses.FrozenInstanceError):
        event.stream = "t"  # type: ignore[misc]
    assert {event, StreamCreated(OFFSET, ID, TIMESTAMP, "s", (0,))} == {event}


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        ({"start_offset": -1}, "start_offset must not be negative"),
        ({"after_id": -1}, "after_id must not be negative"),
        ({"start_position": StartPosition.OFFSET}, "OFFSET needs start_offset"),
        ({"start_position": StartPosition.TIMESTAMP}, "TIMESTAMP needs start_timestamp"),
        ({"start_position": StartPosition.RESUME}, "RESUME needs cursor_id"),
        ({"start_position": 1234}, "Unknown start position"),
    ],
)
def test_bad_arguments_are_refused_when_called(arguments: dict, complaint: str) -> None:
    client = LiftbridgeClient(["127.0.0.1:1"])  # never connected: the call sends nothing

    with pytest.raises(ErrorInvalidArgument, match=complaint):
        client.activity(**arguments)
