"""lbwire: a pure-Python Liftbridge client on its own gRPC over h2 and anyio.

The public API follows gufo-liftbridge 0.2.0 (`lbwire.client`, `lbwire.types`,
`lbwire.error`), so programs migrate by changing their imports; it runs on
asyncio and trio, on CPython and PyPy, without grpcio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Dict, List

if TYPE_CHECKING:
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
    from .options import ClientOptions
    from .types import AckPolicy, CursorConvention, Message, StartPosition, StopPosition

# The one place the version is written: the package metadata (pyproject.toml
# reads it), `lbwire --version`, the gRPC user agent and OpenTelemetry take it here.
__version__ = "0.1.0"

__all__ = [
    "AckPolicy",
    "ClientOptions",
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

# The names above are imported on first use, so that `import lbwire.wire` (or
# `lbwire.testing`) does not load the client, the gRPC layer and h2.
_HOMES: Dict[str, str] = {
    "LiftbridgeClient": "client",
    "ClientOptions": "options",
    "ErrorAlreadyExists": "error",
    "ErrorChannelClosed": "error",
    "ErrorMessageSizeExceeded": "error",
    "ErrorNoMetadataLeader": "error",
    "ErrorNotFound": "error",
    "ErrorUnavailable": "error",
    "LiftbridgeError": "error",
    "AckPolicy": "types",
    "CursorConvention": "types",
    "Message": "types",
    "StartPosition": "types",
    "StopPosition": "types",
}


if not TYPE_CHECKING:  # type checkers see the imports above instead

    def __getattr__(name: str) -> Any:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{home}", __name__), name)
        globals()[name] = value
        return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_HOMES))
