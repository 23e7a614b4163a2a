"""Exceptions raised by lbwire, and the one table that maps gRPC statuses to them.

The class names of gufo-liftbridge 0.2.0 (`LiftbridgeError`, `ErrorNotFound`,
`ErrorAlreadyExists`, `ErrorChannelClosed`, `ErrorUnavailable`,
`ErrorMessageSizeExceeded`, `ErrorNoMetadataLeader`) are kept, so code that
catches them keeps working.  lbwire adds finer classes below them where the
server says more, and mixes in the matching built-in exception
(`ValueError`, `TimeoutError`, `PermissionError`) where that is what a Python
programmer would catch.

Every decision from a gRPC status or the server's message text to an
exception is made here; callers decide by class, never by reading the text.
`from_grpc_error` is the public one, for programs that call `lbwire.grpc`
themselves; the helpers the rest of lbwire uses (`subscribe_error`,
`may_resend`, ...) are importable from here too but are not public API.

Transient and permanent errors: each class says, with its `transient`
attribute, whether trying the same call again (after fresh metadata) can
succeed: a broker that could not be reached, a leader that moved, an
election under way. The retry helpers retry exactly the transient ones.
Independently, `not_processed` says the transport knows the server never
began the call, so a publish may be sent again without being stored twice.
"""

from __future__ import annotations

# lbwire's own helpers: imported here for the rest of lbwire, left out of __all__.
from ._decisions import (  # noqa: F401
    decode_reply,
    from_grpc_error,
    is_empty_partition_refusal,
    is_reverse_end,
    is_stop_reached,
    malformed_reply,
    may_resend,
    more_hopeful,
    no_broker_reachable,
    publish_async_error,
    refused_publish,
    subscribe_error,
)
from ._hierarchy import (
    ErrorAckTimeout,
    ErrorAlreadyExists,
    ErrorAlreadyMember,
    ErrorChannelClosed,
    ErrorCursorNotFound,
    ErrorDeadlineExceeded,
    ErrorEncryptionFailed,
    ErrorEndOfPartition,
    ErrorGroupExists,
    ErrorGroupMembership,
    ErrorHostNotFound,
    ErrorIncorrectOffset,
    ErrorInternal,
    ErrorInvalidArgument,
    ErrorInvalidPartition,
    ErrorInvalidType,
    ErrorLeaderMoved,
    ErrorMalformedReply,
    ErrorMemberInactive,
    ErrorMessageSizeExceeded,
    ErrorNoMetadataLeader,
    ErrorNotAssigned,
    ErrorNotATable,
    ErrorNotCoordinator,
    ErrorNotFound,
    ErrorNotLeader,
    ErrorNotMember,
    ErrorNotStored,
    ErrorPartitionPaused,
    ErrorPermissionDenied,
    ErrorReadonly,
    ErrorReadOnlyOption,
    ErrorReverseUnsupported,
    ErrorRevisionMismatch,
    ErrorSegmentClosed,
    ErrorStaleEpoch,
    ErrorTaskFailed,
    ErrorUnavailable,
    ErrorUndecodableMessage,
    ErrorUnsettled,
    LiftbridgeError,
    PublishAsyncError,
)

__all__ = [
    "ErrorAckTimeout",
    "ErrorAlreadyExists",
    "ErrorAlreadyMember",
    "ErrorChannelClosed",
    "ErrorCursorNotFound",
    "ErrorDeadlineExceeded",
    "ErrorEncryptionFailed",
    "ErrorEndOfPartition",
    "ErrorGroupExists",
    "ErrorGroupMembership",
    "ErrorHostNotFound",
    "ErrorIncorrectOffset",
    "ErrorInternal",
    "ErrorInvalidArgument",
    "ErrorInvalidPartition",
    "ErrorInvalidType",
    "ErrorLeaderMoved",
    "ErrorMalformedReply",
    "ErrorMemberInactive",
    "ErrorMessageSizeExceeded",
    "ErrorNoMetadataLeader",
    "ErrorNotATable",
    "ErrorNotAssigned",
    "ErrorNotCoordinator",
    "ErrorNotFound",
    "ErrorNotLeader",
    "ErrorNotMember",
    "ErrorNotStored",
    "ErrorPartitionPaused",
    "ErrorPermissionDenied",
    "ErrorReadOnlyOption",
    "ErrorReadonly",
    "ErrorReverseUnsupported",
    "ErrorRevisionMismatch",
    "ErrorSegmentClosed",
    "ErrorStaleEpoch",
    "ErrorTaskFailed",
    "ErrorUnavailable",
    "ErrorUndecodableMessage",
    "ErrorUnsettled",
    "LiftbridgeError",
    "PublishAsyncError",
    "from_grpc_error",
]

# Shown (tracebacks, reprs, pickles) under the public module, not the private
# ones that define them.
for _name in __all__:
    _value = globals()[_name]
    if isinstance(_value, type):
        _value.__module__ = __name__
del _name, _value
