"""Value compression, interoperable with gufo-liftbridge.

A compressed message carries its method (`zlib` or `lzma`, the xz container)
as the value of an encoding header (`X-Msg-Encoding` by default); the
receiver removes the header and decompresses.
"""

from __future__ import annotations

import lzma
import zlib
from typing import Callable, Dict, Tuple

__all__ = ["METHODS", "compress", "decompress"]

_Codec = Tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]

METHODS: Dict[str, _Codec] = {
    "zlib": (zlib.compress, zlib.decompress),
    "lzma": (lzma.compress, lzma.decompress),
}


def _codec(method: str) -> _Codec:
    try:
        return METHODS[method]
    except KeyError:
        known = ", ".join(sorted(METHODS))
        raise ValueError(f"Invalid compression method {method!r}: use one of {known}") from None


def compress(value: bytes, method: str) -> bytes:
    """Compress `value` with `method` (`zlib` or `lzma`).

    Raises:
        ValueError: Unknown method.
    """
    return _codec(method)[0](value)


def decompress(value: bytes, method: str) -> bytes:
    """Decompress `value` that was compressed with `method`.

    Raises:
        ValueError: Unknown method, or `value` is not valid compressed data.
    """
    try:
        return _codec(method)[1](value)
    except (zlib.error, lzma.LZMAError) as exc:
        raise ValueError(f"Cannot decompress a {method} value: {exc}") from exc
