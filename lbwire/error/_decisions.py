"""Every decision from a gRPC status or the server's text to an exception (see `lbwire.error`)."""

from __future__ import annotations

import sys
from typing import Dict, Iterable, Optional, Tuple, Type, TypeVar, cast

from .._address import Address, format_address
from ..grpc.status import GRPCError, Status
from ._hierarchy import (
    ErrorAlreadyExists,
    ErrorAlreadyMember,
    ErrorChannelClosed,
    ErrorDeadlineExceeded,
    ErrorEncryptionFailed,
    ErrorGroupExists,
    ErrorHostNotFound,
    ErrorIncorrectOffset,
    ErrorInternal,
    ErrorInvalidArgument,
    ErrorLeaderMoved,
    ErrorMalformedReply,
    ErrorMemberInactive,
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
)

_R = TypeVar("_R")


def _refusal_class(base: Type[LiftbridgeError]) -> Type[PublishAsyncError]:
    """A PublishAsyncError that is also `base`, so one `except` catches both paths."""
    name = "PublishAsync" + base.__name__[len("Error") :]
    cls = type(
        name,
        (PublishAsyncError, base),
        {
            "__doc__": f"A PublishAsync refusal that is also {base.__name__}.",
            "__module__": __name__,
        },
    )
    return cast(Type[PublishAsyncError], cls)


# PublishAsyncError.Code (liftbridge-api) to the class a unary Publish refused
# for the same reason raises: `except ErrorReadonly` works for both paths.
_ASYNC_REFUSALS: Dict[int, Type[PublishAsyncError]] = {
    1: _refusal_class(ErrorInvalidArgument),  # BAD_REQUEST
    2: _refusal_class(ErrorNotFound),  # NOT_FOUND
    3: _refusal_class(ErrorInternal),  # INTERNAL
    4: _refusal_class(ErrorReadonly),  # READONLY
    5: _refusal_class(ErrorIncorrectOffset),  # INCORRECT_OFFSET
    6: _refusal_class(ErrorEncryptionFailed),  # ENCRYPTION_FAILED
    7: _refusal_class(ErrorPermissionDenied),  # PERMISSION_DENIED
}
globals().update({cls.__name__: cls for cls in _ASYNC_REFUSALS.values()})  # for pickle


def publish_async_error(code: int, message: str, correlation_id: str = "") -> PublishAsyncError:
    """The exception for a message the server refused on a PublishAsync stream.

    It is a `PublishAsyncError` (with `code`) and also the class that names
    the cause, e.g. `ErrorPermissionDenied` for code PERMISSION_DENIED.
    """
    cls = _ASYNC_REFUSALS.get(code, PublishAsyncError)
    return cls(message or "publish refused", code=code, correlation_id=correlation_id)


# The status the unary Publish refuses a message with, by the PublishAsyncError.Code
# the stream gives the same refusal (server/api.go): preconditions are gRPC
# statuses there, and failures after them (NATS, resuming) plain errors.
_REFUSAL_STATUS: Dict[int, Status] = {
    1: Status.INVALID_ARGUMENT,  # BAD_REQUEST
    2: Status.NOT_FOUND,  # NOT_FOUND
    3: Status.UNKNOWN,  # INTERNAL
    4: Status.FAILED_PRECONDITION,  # READONLY
    5: Status.UNKNOWN,  # INCORRECT_OFFSET (the ack's error)
    6: Status.INTERNAL,  # ENCRYPTION_FAILED
    7: Status.PERMISSION_DENIED,  # PERMISSION_DENIED
}


def refused_publish(refusal: PublishAsyncError) -> LiftbridgeError:
    """What `publish` raises for a message its PublishAsync stream refused.

    The class and status the unary Publish raises for the same refusal, so
    that `publish` raises alike whichever way the message went (e.g.
    ErrorMessageSizeExceeded for NATS' "maximum payload exceeded", which the
    stream reports as INTERNAL).
    """
    status = _REFUSAL_STATUS.get(refusal.code, Status.UNKNOWN)
    return from_grpc_error(GRPCError(status, refusal.message))


# The single status-to-exception table.  Entries keyed by (status, text) are
# tried first: Liftbridge reuses generic codes for specific conditions and the
# text is the only thing that tells them apart (server/api.go, v1.9.0).
_BY_STATUS_AND_TEXT: Tuple[Tuple[Optional[Status], str, Type[LiftbridgeError]], ...] = (
    # Consumer groups (server/metadata.go, api.go, partition.go). None: any
    # status, as the join's refusal comes with whatever Raft apply returned.
    (None, "already a member", ErrorAlreadyMember),
    # JoinConsumerGroup of a group created by a concurrent join after this
    # one looked (server/metadata.go ErrConsumerGroupExists).
    (Status.FAILED_PRECONDITION, "consumer group already exists", ErrorGroupExists),
    (Status.FAILED_PRECONDITION, "not a member", ErrorNotMember),
    # FetchConsumerGroupAssignments from a coordinator that lists the member
    # without a liveness timer (server/groups.go GetAssignments), as Unknown.
    (None, "consumer not active for server", ErrorMemberInactive),
    # "client-provided group epoch differs from broker group epoch", and Raft's
    # "proposed group epoch N is less than current epoch M".
    (None, "group epoch", ErrorStaleEpoch),
    (Status.FAILED_PRECONDITION, "not the consumer group coordinator", ErrorNotCoordinator),
    (Status.FAILED_PRECONDITION, "not currently assigned", ErrorNotAssigned),
    (Status.INTERNAL, "no known metadata leader", ErrorNoMetadataLeader),
    # A cursor call to a server that has not loaded `__cursors` yet (just
    # restarted; server/cursors.go): missing as the client's own lookup says,
    # so the cursor store waits it out for a stream it has seen.
    (Status.INTERNAL, "cursors stream does not exist", ErrorNotFound),
    # Metadata changes are forwarded to the metadata leader over NATS; when it
    # just died and Raft has not noticed yet, NATS answers "no responders".
    (Status.INTERNAL, "no responders", ErrorNoMetadataLeader),
    (Status.INVALID_ARGUMENT, "exceeds max replication size", ErrorMessageSizeExceeded),
    # The server's NATS connection refuses payloads over NATS' max_payload
    # (1 MiB by default, the same as Liftbridge's replication limit) before
    # Liftbridge's own check: "failed to publish to NATS: nats: maximum
    # payload exceeded".
    (Status.UNKNOWN, "maximum payload exceeded", ErrorMessageSizeExceeded),
    (Status.UNKNOWN, "incorrect expected offset", ErrorIncorrectOffset),
    (Status.UNKNOWN, "is not authorized", ErrorPermissionDenied),
    # SetCursor stores the cursor by publishing to `__cursors` as the caller,
    # and reports that publish's refusal as Internal.
    (Status.INTERNAL, "is not authorized", ErrorPermissionDenied),
    (Status.FAILED_PRECONDITION, "not partition leader", ErrorNotLeader),
    # FetchPartitionMetadata's and the cursor RPCs' wording of the same refusal.
    (Status.FAILED_PRECONDITION, "should be sent to partition leader", ErrorNotLeader),
    (Status.FAILED_PRECONDITION, "not cursor partition leader", ErrorNotLeader),
    (Status.FAILED_PRECONDITION, "not leader for cursors partition", ErrorNotLeader),
    (Status.FAILED_PRECONDITION, "readonly", ErrorReadonly),
    (Status.FAILED_PRECONDITION, "paused", ErrorPartitionPaused),
    (Status.INTERNAL, "encryption", ErrorEncryptionFailed),
    # CreateStream(encryption=True) on a server without a valid
    # LIFTBRIDGE_ENCRYPTION_KEY: "Failed on preconditions for stream's
    # encryption handler: kwp: invalid AES key size ...".
    (Status.FAILED_PRECONDITION, "encryption", ErrorEncryptionFailed),
)

_BY_STATUS: Dict[Status, Type[LiftbridgeError]] = {
    Status.ALREADY_EXISTS: ErrorAlreadyExists,
    Status.NOT_FOUND: ErrorNotFound,
    Status.UNAVAILABLE: ErrorUnavailable,
    Status.INVALID_ARGUMENT: ErrorInvalidArgument,
    Status.OUT_OF_RANGE: ErrorInvalidArgument,
    Status.PERMISSION_DENIED: ErrorPermissionDenied,
    Status.UNAUTHENTICATED: ErrorPermissionDenied,
    Status.DEADLINE_EXCEEDED: ErrorDeadlineExceeded,
    Status.RESOURCE_EXHAUSTED: ErrorMessageSizeExceeded,
    Status.INTERNAL: ErrorInternal,
}


def _unresolvable(exc: BaseException) -> bool:
    """Whether a failure was caused by a host name that does not resolve."""
    # Not imported at module level (lbwire.client stays light): a failed
    # lookup means socket is loaded already.
    socket = sys.modules.get("socket")
    if socket is None:
        return False
    seen = 0
    cause: Optional[BaseException] = exc
    while cause is not None and seen < 8:  # a cause chain is short; never loop
        if isinstance(cause, socket.gaierror):
            return True
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return False


def from_grpc_error(
    exc: GRPCError,
    *,
    default: Type[LiftbridgeError] = LiftbridgeError,
    message: Optional[str] = None,
) -> LiftbridgeError:
    """Turn a gRPC-level error into the lbwire exception that names its cause.

    Args:
        exc: The error the gRPC layer raised.
        default: The class for statuses the table does not know.
        message: Text to use instead of the server's (e.g. one that names
            the call and the broker).

    Returns:
        An exception instance (not raised) carrying the status, the message
        and the transport's `not_processed` flag.
    """
    if exc.status == Status.UNAVAILABLE and _unresolvable(exc):
        return ErrorHostNotFound(
            message or exc.message, status=exc.status, not_processed=exc.not_processed
        )
    text = exc.message.lower()
    cls = next(
        (
            c
            for status, needle, c in _BY_STATUS_AND_TEXT
            if (status is None or exc.status == status) and needle in text
        ),
        None,
    ) or _BY_STATUS.get(exc.status, default)
    if message is None:
        message = exc.message or exc.status.name
    return cls(message, status=exc.status, not_processed=exc.not_processed)


def decode_reply(response_type: Type[_R], data: bytes, *, method: str, broker: Address) -> _R:
    """Decode a unary call's reply; one that does not decode raises `ErrorMalformedReply`.

    Args:
        response_type: The wire message class the call answers with.
        data: The reply's bytes.
        method: The RPC's name, for the message.
        broker: The broker that sent it, for the message.
    """
    try:
        return response_type.decode(data)  # type: ignore[attr-defined, no-any-return]
    except ValueError as exc:
        # wire.DecodeError, a ValueError, caught as such: this module does
        # not import the wire package.
        raise malformed_reply(exc, method=method, broker=broker) from exc


def malformed_reply(exc: ValueError, *, method: str, broker: Address) -> ErrorMalformedReply:
    """The `ErrorMalformedReply` for `exc`, a `wire.DecodeError` of `method`'s reply."""
    return ErrorMalformedReply(
        f"{method} reply from {format_address(broker)} does not decode: {exc}"
    )


def more_hopeful(earlier: Optional[LiftbridgeError], later: LiftbridgeError) -> LiftbridgeError:
    """Of two failures of one call at different brokers, the one to report.

    A transient one wins (trying again may succeed there), so one broker whose
    name does not resolve does not stop the retries while another is only
    down; otherwise the later one.
    """
    if earlier is not None and earlier.transient and not later.transient:
        return earlier
    return later


def may_resend(error: LiftbridgeError) -> bool:
    """Whether a failed publish may be sent again.

    The server never began it, and trying again can help (a host name that
    does not resolve will not).
    """
    return error.not_processed and not isinstance(error, ErrorHostNotFound)


def no_broker_reachable(exc: ErrorUnavailable, seeds: Iterable[Address]) -> ErrorUnavailable:
    """The error a call any broker can serve ends with when none answered.

    An `ErrorHostNotFound` when that was the last broker's failure (so every
    broker's, see `more_hopeful`), else an `ErrorUnavailable`.
    """
    names = ", ".join(format_address(a) for a in seeds)
    cls = ErrorHostNotFound if isinstance(exc, ErrorHostNotFound) else ErrorUnavailable
    return cls(f"No broker reachable (seeds: {names}): {exc}", status=exc.status)


def subscribe_error(
    exc: GRPCError, *, where: str, handshake_done: bool, explicit_stop_offset: bool
) -> Optional[LiftbridgeError]:
    """The exception for a Subscribe call that ended with `exc`, or None.

    None means the subscription simply ended: its stop position was reached,
    a read-only partition's end, or an implied stop before the start.

    Args:
        exc: The error the gRPC layer raised.
        where: `stream/partition`, for the messages.
        handshake_done: Whether the server had confirmed the subscription
            (its first, empty message) before the error.
        explicit_stop_offset: Whether the request asked for STOP_OFFSET.
    """
    status, text = exc.status, exc.message
    lowered = text.lower()
    if status == Status.RESOURCE_EXHAUSTED:
        if "larger than max" in text:
            # Our own receive limit, not the server's end of stream.
            return ErrorMessageSizeExceeded(
                f"A message of {where} exceeds max_message_size: {text}", status=status
            )
        return None  # stop position reached, end of read-only partition, or empty
    if status == Status.UNAVAILABLE:
        return ErrorUnavailable(text, status=status, not_processed=exc.not_processed)
    if "segment has been closed" in text or "segment not found" in text:
        # v1.9.0: Internal before the handshake, Unknown after it. "Not
        # found": the segment being read was removed under the reader (seen
        # in a chaos soak while leadership moved); the next subscribe reads on.
        return ErrorSegmentClosed(text, status=status)
    if not handshake_done:
        if status == Status.FAILED_PRECONDITION and "leader" in lowered:
            return ErrorLeaderMoved(text, status=status)
        if (
            status == Status.INVALID_ARGUMENT
            and not explicit_stop_offset
            and "stop offset is before start offset" in lowered
        ):
            # The implied stop (newest message, end of a read-only partition,
            # stop time) lies before the start, e.g. NEW_ONLY on a read-only
            # partition: nothing to read.
            return None
        return from_grpc_error(exc)
    if status == Status.INTERNAL:
        return ErrorLeaderMoved(text, status=status)  # log closed: leadership moved
    if status == Status.FAILED_PRECONDITION:
        return ErrorPartitionPaused(f"Partition {where} was paused: {text}", status=status)
    return from_grpc_error(exc, default=ErrorChannelClosed)


# -- what a reverse subscription's ending means (lbwire._reverse) ----------------------


def is_reverse_end(exc: GRPCError) -> bool:
    """Whether a reverse Subscribe call ended normally: past the oldest message.

    The server sends the reverse reader's io.EOF as the call's status,
    UNKNOWN with the message "EOF".
    """
    return exc.status == Status.UNKNOWN and exc.message == "EOF"


def is_empty_partition_refusal(exc: GRPCError) -> bool:
    """Whether the server refused a reverse subscription because the partition is empty."""
    return exc.status == Status.INTERNAL and "Failed to create stream reader" in exc.message


def is_stop_reached(exc: GRPCError) -> bool:
    """Whether a Subscribe call ended at its stop position (RESOURCE_EXHAUSTED)."""
    return exc.status == Status.RESOURCE_EXHAUSTED
