"""The exception classes themselves: no server needed (the table's use is tested
against the real server in tests/client and tests/tls)."""

from __future__ import annotations

import pickle

import pytest

from lbwire import wire
from lbwire.error import (
    ErrorEncryptionFailed,
    ErrorIncorrectOffset,
    ErrorInternal,
    ErrorInvalidArgument,
    ErrorNotFound,
    ErrorPermissionDenied,
    ErrorReadonly,
    LiftbridgeError,
    PublishAsyncError,
    publish_async_error,
)

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
