"""The exception classes themselves: no server needed (the table's use is tested
against the real server in tests/client and tests/tls)."""

from __future__ import annotations

import pickle

import pytest

from lbwire import wire
from lbwire.error import (
    ErrorAlreadyMember,
    ErrorChannelClosed,
    ErrorDeadlineExceeded,
    ErrorEncryptionFailed,
    ErrorGroupMembership,
    ErrorIncorrectOffset,
    ErrorInternal,
    ErrorInvalidArgument,
    ErrorLeaderMoved,
    ErrorMessageSizeExceeded,
    ErrorNoMetadataLeader,
    ErrorNotAssigned,
    ErrorNotCoordinator,
    ErrorNotFound,
    ErrorNotLeader,
    ErrorNotMember,
    ErrorPartitionPaused,
    ErrorPermissionDenied,
    ErrorReadonly,
    ErrorSegmentClosed,
    ErrorStaleEpoch,
    ErrorUnavailable,
    LiftbridgeError,
    PublishAsyncError,
    from_grpc_error,
    publish_async_error,
    subscribe_error,
)
from lbwire.grpc import GRPCError, Status
from lbwire.retry import RetryPolicy, retrying

Code = wire.PublishAsyncErrorCode

EXPECTED = {
    Code.UNKNOWN: PublishAsyncError,
    Code.BAD_REQUEST: ErrorInvalidArgument,
    Code.NOT_FOUND: ErrorNotFound,
    Code.INTERNAL: ErrorInternal,
    Code.READONLY: ErrorReadonly,
    Code.INCORRECT_OFFSET: ErrorIncorrectOffset,
    Code.ENCRYPTION_FAILED: ErrorEncryptionFailed,
    Code.PERMISSION_DENIED: ErrorPermissionDenied,
}


def test_every_publish_async_code_has_a_class() -> None:
    assert set(EXPECTED) == set(Code)


@pytest.mark.parametrize("code", list(Code))
def test_publish_async_refusal_is_also_the_class_naming_its_cause(code: Code) -> None:
    error = publish_async_error(int(code), "why", "cid-1")
    assert isinstance(error, PublishAsyncError)
    assert isinstance(error, EXPECTED[code])
    assert isinstance(error, LiftbridgeError)
    assert (error.message, error.code, error.correlation_id) == ("why", code, "cid-1")


@pytest.mark.parametrize("code", list(Code))
def test_publish_async_refusal_survives_pickling(code: Code) -> None:
    # Exceptions cross process boundaries (multiprocessing, concurrent.futures).
    error = publish_async_error(int(code), "why", "cid-2")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert (copy.message, copy.code, copy.correlation_id) == ("why", code, "cid-2")


def test_unknown_future_code_is_a_plain_publish_async_error() -> None:
    error = publish_async_error(99, "", "cid-3")
    assert type(error) is PublishAsyncError
    assert error.code == 99
    assert error.message == "publish refused"


def test_permission_refusal_is_a_python_permission_error() -> None:
    assert isinstance(publish_async_error(int(Code.PERMISSION_DENIED), "no"), PermissionError)


# -- transient and permanent -------------------------------------------------------------------

TRANSIENT = [ErrorUnavailable, ErrorNoMetadataLeader, ErrorNotLeader, ErrorLeaderMoved]
PERMANENT = [
    LiftbridgeError,
    ErrorNotFound,
    ErrorInvalidArgument,
    ErrorPermissionDenied,
    ErrorDeadlineExceeded,
    ErrorPartitionPaused,
    ErrorChannelClosed,
]


@pytest.mark.parametrize("cls", TRANSIENT)
def test_errors_a_retry_can_mend_are_transient(cls: type[LiftbridgeError]) -> None:
    assert cls("x").transient


@pytest.mark.parametrize("cls", PERMANENT)
def test_errors_a_retry_cannot_mend_are_permanent(cls: type[LiftbridgeError]) -> None:
    assert not cls("x").transient


def test_the_transport_flag_not_processed_is_carried_onto_the_error() -> None:
    refused = from_grpc_error(GRPCError(Status.UNAVAILABLE, "refused", not_processed=True))
    assert isinstance(refused, ErrorUnavailable)
    assert refused.not_processed
    assert not from_grpc_error(GRPCError(Status.UNAVAILABLE, "reset")).not_processed


def test_an_error_with_status_and_flag_survives_pickling() -> None:
    error = from_grpc_error(GRPCError(Status.UNAVAILABLE, "gone", not_processed=True))
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ErrorUnavailable
    assert (copy.message, copy.status, copy.not_processed) == ("gone", Status.UNAVAILABLE, True)


@pytest.mark.anyio
async def test_retrying_retries_transient_errors_only() -> None:
    policy = RetryPolicy(attempts=3, initial_backoff=0, max_backoff=0)
    calls = []

    async def unavailable_then_ok(n: int) -> str:
        calls.append(n)
        if n < 2:
            raise ErrorUnavailable("down")
        return "ok"

    assert await retrying(unavailable_then_ok, policy) == "ok"
    assert calls == [0, 1, 2]

    async def not_found(n: int) -> str:
        calls.append(n)
        raise ErrorNotFound("no such stream")

    calls.clear()
    with pytest.raises(ErrorNotFound):
        await retrying(not_found, policy)
    assert calls == [0]


# -- the server's words, decided in one place -----------------------------------------------

# Texts of Liftbridge's server (metadata.go, partition.go) for consumer groups.
GROUP_REFUSALS = [
    (Status.UNKNOWN, "consumer is already a member of the consumer group", ErrorAlreadyMember),
    (Status.FAILED_PRECONDITION, "consumer is not a member of the consumer group", ErrorNotMember),
    (
        Status.FAILED_PRECONDITION,
        "client-provided group epoch differs from broker group epoch",
        ErrorStaleEpoch,
    ),
    (
        Status.FAILED_PRECONDITION,
        "broker is not the consumer group coordinator",
        ErrorNotCoordinator,
    ),
    (
        Status.FAILED_PRECONDITION,
        "Consumer is not currently assigned this partition",
        ErrorNotAssigned,
    ),
]


@pytest.mark.parametrize(("status", "text", "cls"), GROUP_REFUSALS)
def test_consumer_group_refusals_have_their_own_classes(
    status: Status, text: str, cls: type[LiftbridgeError]
) -> None:
    error = from_grpc_error(GRPCError(status, text))
    assert type(error) is cls
    assert isinstance(error, ErrorGroupMembership)


def test_a_server_still_loading_its_cursors_stream_reports_it_missing() -> None:
    # server/cursors.go, while a restarted server has not loaded `__cursors`:
    # ErrorNotFound, which the cursor store waits out for a stream it has seen.
    error = from_grpc_error(GRPCError(Status.INTERNAL, "Cursors stream does not exist"))
    assert type(error) is ErrorNotFound


def _subscribe_error(status: Status, text: str, *, handshake_done: bool) -> object:
    return subscribe_error(
        GRPCError(status, text),
        where="'s'/0",
        handshake_done=handshake_done,
        explicit_stop_offset=False,
    )


def test_a_subscription_at_its_stop_position_simply_ends() -> None:
    assert _subscribe_error(Status.RESOURCE_EXHAUSTED, "", handshake_done=True) is None


def test_a_subscription_over_the_receive_limit_is_message_size_exceeded() -> None:
    error = _subscribe_error(
        Status.RESOURCE_EXHAUSTED, "message larger than max (5 vs. 4)", handshake_done=True
    )
    assert isinstance(error, ErrorMessageSizeExceeded)


def test_a_subscription_whose_leader_moved_is_resumed() -> None:
    before = _subscribe_error(
        Status.FAILED_PRECONDITION, "Server not partition leader", handshake_done=False
    )
    after = _subscribe_error(Status.INTERNAL, "log closed", handshake_done=True)
    assert isinstance(before, ErrorLeaderMoved)
    assert isinstance(after, ErrorLeaderMoved)
    assert before.transient
    assert after.transient


@pytest.mark.parametrize(
    "text", ["segment has been closed", "failed to read message headers: segment not found"]
)
def test_a_subscription_whose_segment_closed_is_resumed(text: str) -> None:
    error = _subscribe_error(Status.UNKNOWN, text, handshake_done=True)
    assert isinstance(error, ErrorSegmentClosed)
    assert error.transient


def test_a_subscription_paused_while_reading_is_partition_paused() -> None:
    error = _subscribe_error(Status.FAILED_PRECONDITION, "paused", handshake_done=True)
    assert isinstance(error, ErrorPartitionPaused)
    assert not error.transient


@pytest.mark.anyio
async def test_retrying_with_listed_classes_retries_those_as_before() -> None:
    policy = RetryPolicy(attempts=2, initial_backoff=0, max_backoff=0)
    calls = []

    async def not_found(n: int) -> str:
        calls.append(n)
        raise ErrorNotFound("no such stream")

    with pytest.raises(ErrorNotFound):
        await retrying(not_found, policy, (ErrorNotFound,))
    assert calls == [0, 1]
