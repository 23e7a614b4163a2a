"""HPACK for the core: hpack's Encoder and Decoder (public API), with caches of whole blocks.

gRPC sends byte-identical header blocks again and again: a method's request
headers, and the server's response headers and OK trailers once their fields
are indexed. Encoding or decoding those field by field is most of the cost of
a HEADERS frame, so whole blocks are cached while they stay valid.

A cached block stays valid while the dynamic table it was encoded or decoded
against is unchanged. The table changes only through a block that inserts a
field (a literal with incremental indexing) or resizes the table (a dynamic
table size update), RFC 7541 6.2.1 and 6.3, and those representations are
read from the block's own bytes by :func:`changes_table`: no HPACK state is
inspected, so the caches cannot go wrong with a new hpack release.
"""

from __future__ import annotations

from typing import Dict, List, Tuple, cast

import hpack

__all__ = ["HeaderDecoder", "HeaderEncoder", "changes_table"]

Headers = List[Tuple[bytes, bytes]]

_CACHE_SIZE = 256


def _skip_integer(block: bytes, position: int, prefix_bits: int) -> Tuple[int, int]:
    """Read an HPACK integer (RFC 7541 5.1): its value and the position after it."""
    mask = (1 << prefix_bits) - 1
    value = block[position] & mask
    position += 1
    if value < mask:
        return value, position
    shift = 0
    while True:
        byte = block[position]
        position += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, position


def changes_table(block: bytes) -> bool:
    """Whether decoding ``block`` changes the dynamic table (True if malformed)."""
    position = 0
    end = len(block)
    try:
        while position < end:
            byte = block[position]
            if byte & 0x80:  # indexed field
                position = _skip_integer(block, position, 7)[1]
            elif byte & 0xE0 == 0x20 or byte & 0xC0 == 0x40:
                return True  # a table size update, or a field that is inserted
            else:  # a literal not inserted (without indexing, never indexed)
                index, position = _skip_integer(block, position, 4)
                if index == 0:  # the name is a literal too
                    length, position = _skip_integer(block, position, 7)
                    position += length
                length, position = _skip_integer(block, position, 7)
                position += length
    except IndexError:
        return True
    return position != end


class HeaderDecoder:
    """Decodes header blocks; remembers those that leave the table alone.

    Args:
        max_header_list_size: a block whose header list is larger raises
            ``hpack.OversizedHeaderListError``.

    """

    __slots__ = ("_cache", "_decoder")

    def __init__(self, max_header_list_size: int) -> None:
        self._decoder = hpack.Decoder(max_header_list_size=max_header_list_size)
        self._cache: Dict[bytes, Tuple[Headers, int]] = {}

    def decode(self, block: bytes) -> Tuple[Headers, int]:
        """Decode a header block; return the headers and their RFC 9113 list size.

        Raises:
            hpack.HPACKError: the block is malformed, or its header list is too large.

        """
        cache = self._cache
        cached = cache.get(block)
        if cached is not None:
            return cached
        changes = changes_table(block)
        headers = cast(Headers, self._decoder.decode(block, raw=True))
        size = 0
        for name, value in headers:
            size += len(name) + len(value) + 32
        result = (headers, size)
        if changes:
            cache.clear()
        else:
            if len(cache) >= _CACHE_SIZE:
                cache.clear()
            cache[block] = result
        return result


class HeaderEncoder:
    """Encodes header blocks; the constant request headers of a method are cached."""

    __slots__ = ("_cache", "_encoder")

    def __init__(self) -> None:
        self._encoder = hpack.Encoder()
        self._cache: Dict[Tuple[bytes, ...], bytes] = {}

    def set_table_size(self, size: int) -> None:
        """The peer's SETTINGS_HEADER_TABLE_SIZE: the next block announces the new size."""
        self._encoder.header_table_size = size
        self._cache.clear()

    def encode(self, headers: Headers) -> bytes:
        """Encode a header block (a block that changes the table drops the cache)."""
        block = self._encoder.encode(headers)
        if changes_table(block):
            self._cache.clear()
        return block

    def encode_cached(self, key: Tuple[bytes, ...], headers: Headers) -> bytes:
        """Encode ``headers``, which ``key`` identifies, reusing the block while valid.

        After a method's first call its headers are all in the table, so their
        encoding is the same bytes until the table changes.
        """
        block = self._cache.get(key)
        if block is not None:
            return block
        block = self._encoder.encode(headers)
        if changes_table(block):
            self._cache.clear()
        else:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = block
        return block
