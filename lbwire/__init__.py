"""lbwire: a pure-Python Liftbridge client on its own gRPC over h2 and anyio.

The public API follows gufo-liftbridge 0.2.0 (`lbwire.client`, `lbwire.types`,
`lbwire.error`), so programs migrate by changing their imports; it runs on
asyncio and trio, on CPython and PyPy, without grpcio.
"""

from __future__ import annotations

from .client import LiftbridgeClient
from .error import (
    ErrorAlreadyExists,
    ErrorChannelClosed,
    ErrorMessageSizeExceeded,
    ErrorNoMetadataLeader,
    ErrorNotFound,
    ErrorUnavailable,
    LiftbridgeError,
)
from .types import AckPolicy, CursorConvention, Message, StartPosition, StopPosition

__version__ = "0.1.0"

__all__ = [
    "AckPolicy",
    "CursorConvention",
    "ErrorAlreadyExists",
    "ErrorChannelClosed",
    "ErrorMessageSizeExceeded",
    "ErrorNoMetadataLeader",
    "ErrorNotFound",
    "ErrorUnavailable",
    "LiftbridgeClient",
    "LiftbridgeError",
    "Message",
    "StartPosition",
    "StopPosition",
    "__version__",
]
