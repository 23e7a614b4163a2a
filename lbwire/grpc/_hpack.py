"""HPACK (RFC 7541) for the core: a header block encoder and decoder, with caches of whole blocks.

Why lbwire's own: the ``hpack`` package was most of what a cold start loaded
before its first message (its Huffman decoding tables above all), and a gRPC
client needs little of HPACK's encoder. The encoder here never Huffman-codes
(allowed by RFC 7541 5.2; the few bytes saved cost CPU on every new field) and
indexes every field it sends, so a method's request headers become one byte
per field from its second call on. The decoder is complete: the server's
encoder may use every representation, Huffman coding and table size updates.

gRPC sends byte-identical header blocks again and again: a method's request
headers, and the server's response headers and OK trailers once their fields
are indexed. Encoding or decoding those field by field is most of the cost of
a HEADERS frame, so whole blocks are cached while they stay valid: while the
dynamic table they were encoded or decoded against is unchanged. Only a block
that inserts a field or resizes the table changes it (RFC 7541 6.2.1, 6.3).
"""

from __future__ import annotations

from collections import deque
from typing import Deque, Dict, List, Optional, Sequence, Tuple

__all__ = [
    "STATIC_TABLE",
    "HPACKError",
    "HeaderDecoder",
    "HeaderEncoder",
    "OversizedHeaderList",
    "huffman_decode",
]

Header = Tuple[bytes, bytes]
Headers = List[Header]

_CACHE_SIZE = 256
#: Blocks larger than this are decoded every time: gRPC's repeated blocks are
#: a few dozen bytes, and the cache must not hold up to 256 x 1 MiB.
_CACHE_MAX_BLOCK = 1024

#: The largest dynamic table either side uses: RFC 7541's default, which
#: lbwire never changes in its SETTINGS (so the server's encoder may use it).
DEFAULT_TABLE_SIZE = 4096


class HPACKError(Exception):
    """A header block that does not decode: the connection ends with COMPRESSION_ERROR."""


class OversizedHeaderList(HPACKError):
    """A header block whose header list is larger than the decoder's limit."""


#: RFC 7541 Appendix A; index ``i`` of the table is ``STATIC_TABLE[i - 1]``.
STATIC_TABLE: Tuple[Header, ...] = (
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
)
_STATIC_COUNT = len(STATIC_TABLE)
_STATIC_FIELDS: Dict[Header, int] = {}
_STATIC_NAMES: Dict[bytes, int] = {}
for _index, _field in enumerate(STATIC_TABLE, 1):
    _STATIC_FIELDS.setdefault(_field, _index)
    _STATIC_NAMES.setdefault(_field[0], _index)


# -- primitives -------------------------------------------------------------


def _read_integer(block: bytes, position: int, prefix_bits: int) -> Tuple[int, int]:
    """An HPACK integer (RFC 7541 5.1): its value and the position after it.

    Raises IndexError at the end of the block, HPACKError after five
    continuation bytes (no length or index comes near; more is an attack).
    """
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
        if not byte & 0x80:
            return value, position
        shift += 7
        if shift > 28:
            raise HPACKError("integer longer than 2**28")


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    """Encode ``value`` with an N-bit prefix; ``first`` holds the representation's flag bits."""
    mask = (1 << prefix_bits) - 1
    if value < mask:
        return bytes((first | value,))
    out = bytearray((first | mask,))
    value -= mask
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(value: bytes) -> bytes:
    """A string literal, not Huffman-coded (RFC 7541 5.2)."""
    n = len(value)
    return (bytes((n,)) if n < 0x7F else _integer(n, 7, 0)) + value


# -- Huffman decoding ---------------------------------------------------------

#: RFC 7541 Appendix B, the length in bits of each symbol's code (symbols 0 to
#: 255, then EOS), as ``chr(ord("A") + length - 5)``. The code is canonical:
#: codes follow from their lengths (ordered by length, then by symbol).
_CODE_LENGTHS = (
    "ISXXXXXXXTZXXZXXXXXXXXZXXXXXXXXXBFFHIBDGFFDGDBBBAAABBBBBBBCDKBHFIBCCCCCCCCCC"
    "CCCCCCCCCCCCDCDIOIJBKABABABBBACCBBBABCBAABCCCCCKGJIXPRPPRRRSRSSSSSTSTTRSTSSSS"
    "QRSRSSTRQPRRSSQSRRTQRSSQQRQSRSSPRRRSRRSVVPORSRUVVVWWVTUOQVWWVWTQQVVXWWWPTPQRQ"
    "QSRRUUTTVSVWVVWWWWWXWWWWWVZ"
)
_EOS = 256


class _Canonical:
    """Decoding tables of the canonical Huffman code, built on first use."""

    __slots__ = ("count", "first", "offset", "symbols")

    def __init__(self) -> None:
        lengths = [ord(c) - ord("A") + 5 for c in _CODE_LENGTHS]
        self.symbols = sorted(range(len(lengths)), key=lambda s: (lengths[s], s))
        self.first = [0] * 31  # the code of a length's first symbol
        self.offset = [0] * 31  # that symbol's place in `symbols`
        self.count = [0] * 31
        code = -1
        previous = lengths[self.symbols[0]]
        for place, symbol in enumerate(self.symbols):
            length = lengths[symbol]
            code = (code + 1) << (length - previous)
            previous = length
            if not self.count[length]:
                self.first[length] = code
                self.offset[length] = place
            self.count[length] += 1


_canonical: Optional[_Canonical] = None


def huffman_decode(data: bytes) -> bytes:
    """Decode a Huffman-coded string literal (RFC 7541 5.2).

    Raises:
        HPACKError: an invalid code, the EOS symbol, or padding that is longer
            than 7 bits or not the most significant bits of EOS.

    """
    global _canonical
    tables = _canonical
    if tables is None:
        tables = _canonical = _Canonical()
    first, offset, count, symbols = tables.first, tables.offset, tables.count, tables.symbols
    out = bytearray()
    bits = 0  # the undecoded bits, `held` of them
    held = 0
    position = 0
    end = len(data)
    while True:
        while held < 30 and position < end:
            bits = (bits << 8) | data[position]
            position += 1
            held += 8
        # A canonical code's prefix of any shorter length is past that
        # length's codes, so the first length that matches is the code.
        for length in range(5, min(held, 30) + 1):
            place = (bits >> (held - length)) - first[length]
            if 0 <= place < count[length]:
                symbol = symbols[offset[length] + place]
                if symbol == _EOS:
                    raise HPACKError("Huffman-coded string holds the EOS symbol")
                out.append(symbol)
                held -= length
                bits &= (1 << held) - 1
                break
        else:
            # No code in what is left: it must be padding, up to 7 one bits.
            if held > 7 or bits != (1 << held) - 1:
                raise HPACKError("invalid Huffman code or padding")
            return bytes(out)


# -- decoder ------------------------------------------------------------------


class HeaderDecoder:
    """Decodes header blocks; remembers those that leave the table alone.

    Args:
        max_header_list_size: a block whose header list (RFC 9113 6.5.2) is
            larger raises :class:`OversizedHeaderList` as soon as it is
            exceeded, before the rest of the block is decoded.

    """

    __slots__ = ("_cache", "_changes", "_max_list", "_max_size", "_size", "_table")

    def __init__(self, max_header_list_size: int) -> None:
        self._max_list = max_header_list_size
        self._table: Deque[Header] = deque()  # newest first: index 62 is _table[0]
        self._size = 0
        self._max_size = DEFAULT_TABLE_SIZE
        self._changes = 0  # table changes so far: a cached block is valid between them
        self._cache: Dict[bytes, Tuple[Headers, int]] = {}

    def decode(self, block: bytes) -> Tuple[Headers, int]:
        """Decode a header block; return the headers and their RFC 9113 list size.

        Raises:
            HPACKError: the block is malformed, or its header list is too large
                (:class:`OversizedHeaderList`).

        """
        cache = self._cache
        cached = cache.get(block)
        if cached is not None:
            return cached
        changes = self._changes
        try:
            result = self._decode(block)
        except IndexError:
            cache.clear()  # the block may have changed the table before it failed
            raise HPACKError("header block ends inside a field") from None
        except HPACKError:
            cache.clear()
            raise
        if self._changes != changes:
            cache.clear()
        elif len(block) <= _CACHE_MAX_BLOCK:
            if len(cache) >= _CACHE_SIZE:
                cache.clear()
            cache[block] = result
        return result

    def _decode(self, block: bytes) -> Tuple[Headers, int]:
        headers: Headers = []
        size = 0
        position = 0
        end = len(block)
        while position < end:
            byte = block[position]
            if byte & 0x80:  # indexed field (6.1)
                index, position = _read_integer(block, position, 7)
                header = self._field(index)
            elif byte & 0xE0 == 0x20:  # dynamic table size update (6.3)
                if headers:
                    raise HPACKError("dynamic table size update after a header field")
                new_size, position = _read_integer(block, position, 5)
                if new_size > DEFAULT_TABLE_SIZE:
                    raise HPACKError(
                        f"dynamic table size {new_size} above the {DEFAULT_TABLE_SIZE} allowed"
                    )
                self._max_size = new_size
                self._evict(0)
                self._changes += 1
                continue
            else:
                # Literals (6.2): with incremental indexing (01), without
                # indexing (0000) or never indexed (0001).
                indexing = byte & 0x40
                index, position = _read_integer(block, position, 6 if indexing else 4)
                if index:
                    name = self._field(index)[0]
                else:
                    name, position = self._literal(block, position)
                value, position = self._literal(block, position)
                header = (name, value)
                if indexing:
                    self._insert(header)
            headers.append(header)
            size += len(header[0]) + len(header[1]) + 32
            if size > self._max_list:
                raise OversizedHeaderList(f"header list larger than {self._max_list} bytes")
        return headers, size

    def _field(self, index: int) -> Header:
        if 0 < index <= _STATIC_COUNT:
            return STATIC_TABLE[index - 1]
        dynamic = index - _STATIC_COUNT - 1
        if index == 0 or dynamic >= len(self._table):
            raise HPACKError(f"header field index {index} not in the table")
        return self._table[dynamic]

    def _literal(self, block: bytes, position: int) -> Tuple[bytes, int]:
        huffman = block[position] & 0x80
        length, position = _read_integer(block, position, 7)
        stop = position + length
        if stop > len(block):
            raise HPACKError("string literal longer than the header block")
        value = block[position:stop]
        return (huffman_decode(value) if huffman else value), stop

    def _insert(self, header: Header) -> None:
        self._changes += 1
        entry = len(header[0]) + len(header[1]) + 32
        self._evict(entry)
        if entry <= self._max_size:  # a larger entry only empties the table (4.4)
            self._table.appendleft(header)
            self._size += entry

    def _evict(self, room: int) -> None:
        table = self._table
        while table and self._size + room > self._max_size:
            name, value = table.pop()
            self._size -= len(name) + len(value) + 32


# -- encoder ------------------------------------------------------------------


#: Fields whose values are credentials: sent as literals never indexed
#: (RFC 7541 7.1.3), so no table and no intermediary keeps them.
_SENSITIVE = frozenset((b"authorization", b"proxy-authorization"))


class HeaderEncoder:
    """Encodes header blocks; the constant request headers of a method are cached.

    Every field is sent indexed when the static or dynamic table has it, else
    as a literal with incremental indexing (its name indexed when a table has
    the name), never Huffman-coded; credentials are never indexed. Every
    block returned must be sent, in the order encoded: the peer's table
    follows ours only through them.
    """

    __slots__ = (
        "_cache",
        "_changes",
        "_fields",
        "_inserted",
        "_max_size",
        "_names",
        "_pending_size",
        "_size",
        "_smallest_size",
        "_table",
    )

    def __init__(self) -> None:
        # Newest first, with each entry's insertion number: the entry numbered
        # k has index 62 + (inserted - 1 - k) while it is in the table.
        self._table: Deque[Tuple[Header, int]] = deque()
        self._inserted = 0
        self._fields: Dict[Header, int] = {}  # a field's newest insertion number
        self._names: Dict[bytes, int] = {}  # a name's newest insertion number
        self._size = 0
        self._max_size = DEFAULT_TABLE_SIZE
        self._pending_size: Optional[int] = None
        self._smallest_size = DEFAULT_TABLE_SIZE  # since the last block (RFC 7541 4.2)
        self._changes = 0
        self._cache: Dict[Tuple[bytes, ...], bytes] = {}

    def set_table_size(self, size: int) -> None:
        """Use a table of ``size`` from the next block on.

        ``size`` is at most the peer's SETTINGS_HEADER_TABLE_SIZE; the next
        block starts with the table size update that tells the peer (two,
        when the size went lower in between: RFC 7541 4.2 asks for the
        smallest size since the last block, then the final one).
        """
        if size == self._max_size and self._pending_size is None:
            return
        if self._pending_size is None:
            self._smallest_size = size
        self._smallest_size = min(self._smallest_size, size)
        self._max_size = size
        self._pending_size = size
        self._evict(0)
        self._changes += 1
        self._cache.clear()

    def encode(self, headers: Sequence[Header]) -> bytes:
        """Encode a header block (a block that changes the table drops the cache)."""
        changes = self._changes
        block = self._encode(headers)
        if self._changes != changes:
            self._cache.clear()
        return block

    def encode_cached(self, key: Tuple[bytes, ...], headers: Sequence[Header]) -> bytes:
        """Encode ``headers``, which ``key`` identifies, reusing the block while valid.

        After a method's first call its headers are all in the table, so their
        encoding is the same bytes until the table changes.
        """
        cache = self._cache
        block = cache.get(key)
        if block is not None:
            return block
        changes = self._changes
        block = self._encode(headers)
        if self._changes != changes:
            cache.clear()
        else:
            if len(cache) >= _CACHE_SIZE:
                cache.clear()
            cache[key] = block
        return block

    def _encode(self, headers: Sequence[Header]) -> bytes:
        out = bytearray()
        if self._pending_size is not None:
            if self._smallest_size < self._pending_size:
                out += _integer(self._smallest_size, 5, 0x20)
            out += _integer(self._pending_size, 5, 0x20)
            self._pending_size = None
            self._changes += 1
        for header in headers:
            if header[0] in _SENSITIVE:
                out += _integer(_STATIC_NAMES[header[0]], 4, 0x10)  # literal never indexed
                out += _string(header[1])
                continue
            index = _STATIC_FIELDS.get(header)
            if index is None:
                number = self._fields.get(header)
                if number is not None:
                    index = _STATIC_COUNT + self._inserted - number
            if index is not None:
                out += _integer(index, 7, 0x80)
                continue
            name, value = header
            name_index = _STATIC_NAMES.get(name)
            if name_index is None:
                number = self._names.get(name)
                if number is not None:
                    name_index = _STATIC_COUNT + self._inserted - number
            if name_index is None:
                out += b"\x40"
                out += _string(name)
            else:
                out += _integer(name_index, 6, 0x40)
            out += _string(value)
            self._insert(header)
        return bytes(out)

    def _insert(self, header: Header) -> None:
        self._changes += 1
        entry = len(header[0]) + len(header[1]) + 32
        self._evict(entry)
        if entry > self._max_size:
            return  # the decoder empties its table too, and inserts nothing (4.4)
        number = self._inserted
        self._inserted += 1
        self._table.appendleft((header, number))
        self._size += entry
        self._fields[header] = number
        self._names[header[0]] = number

    def _evict(self, room: int) -> None:
        table = self._table
        while table and self._size + room > self._max_size:
            header, number = table.pop()
            self._size -= len(header[0]) + len(header[1]) + 32
            if self._fields.get(header) == number:
                del self._fields[header]
            if self._names.get(header[0]) == number:
                del self._names[header[0]]
