"""Value compression, interoperable with gufo-liftbridge.

A compressed message carries its method (`zlib` or `lzma`, the xz container)
as the value of an encoding header (`X-Msg-Encoding` by default); the
receiver removes the header and decompresses.
"""

from __future__ import annotations

import lzma
import zlib
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from .error import ErrorUndecodableMessage

if TYPE_CHECKING:
    from .types import Message

__all__ = ["METHODS", "compress", "decode_message", "decompress"]

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


def decompress(value: bytes, method: str, max_size: Optional[int] = None) -> bytes:
    """Decompress `value` that was compressed with `method`.

    Args:
        value: The compressed bytes.
        method: `zlib` or `lzma`.
        max_size: Largest output accepted, in bytes (None: no limit).
            Decompression stops as soon as it would exceed it, so a small
            value that expands enormously (a "zip bomb") costs at most
            `max_size` bytes of memory.

    Raises:
        ValueError: Unknown method, `value` is not valid (or complete)
            compressed data, or it expands beyond `max_size`.
    """
    if max_size is None:
        try:
            return _codec(method)[1](value)
        except (zlib.error, lzma.LZMAError) as exc:
            raise ValueError(f"Cannot decompress a {method} value: {exc}") from exc
    _codec(method)  # checks the name
    try:
        if method == "zlib":
            return _bounded_zlib(value, max_size)
        return _bounded_lzma(value, max_size)
    except (zlib.error, lzma.LZMAError, EOFError) as exc:
        raise ValueError(f"Cannot decompress a {method} value: {exc}") from exc


def _too_large(method: str, max_size: int) -> ValueError:
    return ValueError(f"A {method} value expands beyond the limit of {max_size} bytes")


def _bounded_zlib(value: bytes, max_size: int) -> bytes:
    decompressor = zlib.decompressobj()
    # One byte more than allowed tells "exactly at the limit" from "beyond".
    out = decompressor.decompress(value, max_size + 1)
    if len(out) > max_size or decompressor.unconsumed_tail:
        raise _too_large("zlib", max_size)
    if not decompressor.eof:
        raise ValueError("Cannot decompress a zlib value: incomplete or truncated data")
    return out


def _bounded_lzma(value: bytes, max_size: int) -> bytes:
    # lzma.decompress accepts concatenated streams; so does this.
    parts: List[bytes] = []
    size = 0
    data = value
    while True:
        decompressor = lzma.LZMADecompressor()
        try:
            out = decompressor.decompress(data, max_size - size + 1)
        except lzma.LZMAError:
            if parts:
                # Trailing bytes after a complete stream: ignored, as
                # lzma.decompress does.
                return b"".join(parts)
            raise
        size += len(out)
        if size > max_size or (not decompressor.eof and not decompressor.needs_input):
            raise _too_large("lzma", max_size)
        if not decompressor.eof:
            raise ValueError("Cannot decompress a lzma value: incomplete or truncated data")
        parts.append(out)
        data = decompressor.unused_data
        if not data:
            return b"".join(parts)


def decode_message(
    message: Message, encoding_header: str, max_size: int, on_undecodable: str
) -> Message:
    """`message` with its value decompressed, when its encoding header says so.

    A message that cannot be decoded (a lying or unknown encoding header, a
    value expanding beyond `max_size`) raises `ErrorUndecodableMessage`, or
    with `on_undecodable="raw"` comes back as received, with `decode_error`.
    """
    headers = message.headers
    try:
        method = headers[encoding_header].decode()
        message.value = decompress(message.value, method, max_size)
    except ValueError as exc:  # UnicodeDecodeError included
        if on_undecodable == "raw":
            message.decode_error = str(exc)
            return message
        raise undecodable(message, f"cannot be decoded: {exc}") from exc
    del headers[encoding_header]
    return message


def undecodable(message: Message[Any, Any], reason: str) -> ErrorUndecodableMessage:
    """The `ErrorUndecodableMessage` for `message` (as received), saying `reason` and what to do."""
    return ErrorUndecodableMessage(
        f"Message {message.offset} of {message.stream!r}/{message.partition} {reason}; "
        f"subscribe from offset {message.offset + 1} to skip it, or with "
        f'on_undecodable="raw" to receive it as is',
        stream=message.stream,
        partition=message.partition,
        offset=message.offset,
        raw=message,
    )
