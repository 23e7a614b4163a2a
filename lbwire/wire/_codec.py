"""The table-driven protobuf (proto3) codec every message class inherits.

Every message class describes its fields in ``_FIELDS`` (number, name, kind and,
for enums and nested messages, the Python class). ``WireMessage`` encodes and
decodes any such class from that table. The message classes are generated into
``_generated.py`` by ``scripts/gen_wire.py``; the client's hot paths
(``Message``, ``Ack`` and ``PublishResponse`` decoding, ``PublishRequest``
encoding) are written out by hand in ``messages.py`` and checked against this
generic code by the tests. The varint primitives are in ``_primitives``.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Callable, ClassVar, Optional, TypeVar, Union

from ._primitives import (
    WT_LEN,
    WT_VARINT,
    DecodeError,
    Malformed,
    as_bytes,
    decode_str,
    decode_varint,
    encode_varint,
    read_length,
    skip_field,
    to_int32,
    to_int64,
)
from ._primitives import decode_varint8 as decode_varint8  # for the tests

__all__ = ["MAX_DEPTH", "DecodeError", "WireMessage"]

#: Deepest nesting of length-delimited messages a decoder follows. The Liftbridge
#: schema has no recursive message and unknown fields are skipped, not parsed, so
#: real input never gets near this; it is protobuf's own limit.
MAX_DEPTH = 100

# Field kinds: how a field's Python value maps to the wire.
K_INT32 = 0
K_INT64 = 1
K_UINT64 = 2
K_BOOL = 3
K_ENUM = 4
K_STRING = 5
K_BYTES = 6
K_MESSAGE = 7
K_REP_INT32 = 8
K_REP_STRING = 9
K_REP_MESSAGE = 10
K_MAP_STR_BYTES = 11
K_MAP_INT32_MESSAGE = 12
K_NULLABLE_INT64 = 13
K_NULLABLE_INT32 = 14
K_NULLABLE_BOOL = 15

_WIRE_TYPE = {
    K_INT32: WT_VARINT,
    K_INT64: WT_VARINT,
    K_UINT64: WT_VARINT,
    K_BOOL: WT_VARINT,
    K_ENUM: WT_VARINT,
    K_REP_INT32: WT_LEN,  # packed; the unpacked varint form is accepted too
}


class Field:
    """One field of a message: its number, attribute name, kind and class."""

    __slots__ = ("kind", "name", "number", "tag", "type", "wire_type")

    def __init__(self, number: int, name: str, kind: int, type_: Any = None) -> None:
        self.number = number
        self.name = name
        self.kind = kind
        self.type = type_
        self.wire_type = _WIRE_TYPE.get(kind, WT_LEN)
        self.tag = encode_varint(number << 3 | self.wire_type)


M = TypeVar("M", bound="WireMessage")


class WireMessage:
    """Base of every Liftbridge message class.

    Subclasses list their fields in ``_FIELDS`` (in field-number order) and
    define ``__slots__`` and a keyword-only ``__init__`` with proto3 defaults.
    """

    __slots__ = ()
    __hash__ = None  # type: ignore[assignment]  # mutable, like protobuf messages

    _FIELDS: ClassVar[tuple[Field, ...]] = ()
    _BY_NUMBER: ClassVar[dict[int, Field]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._BY_NUMBER = {f.number: f for f in cls._FIELDS}

    @classmethod
    def fields(cls) -> tuple[Field, ...]:
        """The message's fields, in field-number order (the schema, as data)."""
        return cls._FIELDS

    # -- encoding --------------------------------------------------------

    def encode(self) -> bytes:
        """Serialize to protobuf bytes, identical to what protobuf produces.

        Fields come in field-number order, proto3 default values are omitted,
        map entries follow the dict's iteration order.
        """
        out = bytearray()
        for f in self._FIELDS:
            value = getattr(self, f.name)
            _ENCODERS[f.kind](out, f, value)
        return bytes(out)

    def SerializeToString(self) -> bytes:
        """Alias of ``encode()``, for code written against protobuf classes."""
        return self.encode()

    # -- decoding --------------------------------------------------------

    @classmethod
    def decode(cls: type[M], data: Union[bytes, bytearray, memoryview]) -> M:
        """Parse protobuf bytes into a new message.

        Unknown fields are skipped. Raises ``DecodeError`` if the bytes are not a
        valid encoding of this message.
        """
        buf = as_bytes(data)
        msg = cls()
        msg.merge_range(buf, 0, len(buf))
        return msg

    @classmethod
    def FromString(cls: type[M], data: Union[bytes, bytearray, memoryview]) -> M:
        """Alias of ``decode()``, for code written against protobuf classes."""
        return cls.decode(data)

    def merge_range(self, buf: bytes, pos: int, end: int, depth: int = 0) -> int:
        """Merge the fields encoded in ``buf[pos:end]`` into ``self``; return ``end``.

        For decoders that hold a larger buffer (nested messages, envelopes,
        gRPC frames): no slice is copied. ``depth`` is the nesting level of
        ``self`` (0 for an outermost message). Raises ``DecodeError`` like
        ``decode()``.
        """
        cls = type(self)
        if depth > MAX_DEPTH:
            raise DecodeError(f"{cls.__name__}: nesting deeper than {MAX_DEPTH}")
        by_number = cls._BY_NUMBER
        where = "tag"
        try:
            while pos < end:
                where = "tag"
                tag, pos = decode_varint(buf, pos)
                number = tag >> 3
                wire_type = tag & 7
                f = by_number.get(number)
                if f is None:
                    if number == 0 or number > 0x1FFFFFFF:
                        raise Malformed(f"invalid field number {number}")
                    where = f"field {number}"
                    pos = skip_field(buf, pos, end, wire_type)
                    continue
                where = f.name
                if wire_type != f.wire_type and not (
                    f.kind == K_REP_INT32 and wire_type == WT_VARINT
                ):
                    raise Malformed(f"wire type {wire_type}, expected {f.wire_type}")
                pos = _DECODERS[f.kind](self, f, buf, pos, end, depth, wire_type)
                if pos > end:
                    raise IndexError
        except IndexError:
            raise DecodeError(f"{cls.__name__}.{where}: truncated input") from None
        except Malformed as exc:
            raise DecodeError(f"{cls.__name__}.{where}: {exc}") from None
        except DecodeError as exc:
            raise DecodeError(f"{cls.__name__}.{where} > {exc}") from None
        return pos

    # -- comparison and display -------------------------------------------

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in self._FIELDS)

    def __repr__(self) -> str:
        # Only fields that differ from their default: messages stay readable.
        parts = []
        for f in self._FIELDS:
            value = getattr(self, f.name)
            if value is None or (not value and f.kind < K_NULLABLE_INT64):
                continue
            parts.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


# -- per-kind encoders ----------------------------------------------------

_Encoder = Callable[[bytearray, Field, Any], None]


def _enc_varint(out: bytearray, f: Field, value: int) -> None:
    if value:
        out += f.tag
        out += encode_varint(value)


def _enc_bool(out: bytearray, f: Field, value: bool) -> None:
    if value:
        out += f.tag
        out.append(1)


def _enc_str(out: bytearray, f: Field, value: str) -> None:
    if value:
        raw = value.encode()
        out += f.tag
        out += encode_varint(len(raw))
        out += raw


def _enc_bytes(out: bytearray, f: Field, value: bytes) -> None:
    if value:
        out += f.tag
        out += encode_varint(len(value))
        out += value


def _enc_message(out: bytearray, f: Field, value: Optional[WireMessage]) -> None:
    if value is not None:
        raw = value.encode()
        out += f.tag
        out += encode_varint(len(raw))
        out += raw


def _enc_rep_int32(out: bytearray, f: Field, value: list[int]) -> None:
    if value:
        raw = b"".join([encode_varint(v) for v in value])
        out += f.tag
        out += encode_varint(len(raw))
        out += raw


def _enc_rep_str(out: bytearray, f: Field, value: list[str]) -> None:
    for item in value:
        raw = item.encode()
        out += f.tag
        out += encode_varint(len(raw))
        out += raw


def _enc_rep_message(out: bytearray, f: Field, value: list[WireMessage]) -> None:
    for item in value:
        raw = item.encode()
        out += f.tag
        out += encode_varint(len(raw))
        out += raw


def encode_str_bytes_map(out: bytearray, tag: bytes, value: dict[str, bytes]) -> None:
    """Append a ``map<string, bytes>`` field.

    Protobuf writes key and value of every entry, even when they are empty.
    """
    for key, val in value.items():
        kraw = key.encode()
        klen = len(kraw)
        vlen = len(val)
        if klen + vlen < 0x7C:  # every length fits one byte: one formatting call
            out += b"%b%c\x0a%c%b\x12%c%b" % (
                tag,
                klen + vlen + 4,
                klen,
                kraw,
                vlen,
                val,
            )
            continue
        kl = encode_varint(klen)
        vl = encode_varint(vlen)
        out += tag
        out += encode_varint(2 + len(kl) + klen + len(vl) + vlen)
        out.append(0x0A)
        out += kl
        out += kraw
        out.append(0x12)
        out += vl
        out += val


def _enc_map_str_bytes(out: bytearray, f: Field, value: dict[str, bytes]) -> None:
    encode_str_bytes_map(out, f.tag, value)


def _enc_map_int32_message(out: bytearray, f: Field, value: dict[int, WireMessage]) -> None:
    for key, val in value.items():
        kraw = encode_varint(key)
        vraw = val.encode()
        vlen = encode_varint(len(vraw))
        out += f.tag
        out += encode_varint(2 + len(kraw) + len(vlen) + len(vraw))
        out.append(0x08)
        out += kraw
        out.append(0x12)
        out += vlen
        out += vraw


def _enc_nullable_int(out: bytearray, f: Field, value: Optional[int]) -> None:
    # A set wrapper is always written, even when it holds the default 0.
    if value is not None:
        out += f.tag
        if value:
            raw = encode_varint(value)
            out.append(1 + len(raw))
            out.append(0x08)
            out += raw
        else:
            out.append(0)


def _enc_nullable_bool(out: bytearray, f: Field, value: Optional[bool]) -> None:
    if value is not None:
        out += f.tag
        out += b"\x02\x08\x01" if value else b"\x00"


_ENCODERS: dict[int, _Encoder] = {
    K_INT32: _enc_varint,
    K_INT64: _enc_varint,
    K_UINT64: _enc_varint,
    K_BOOL: _enc_bool,
    K_ENUM: _enc_varint,
    K_STRING: _enc_str,
    K_BYTES: _enc_bytes,
    K_MESSAGE: _enc_message,
    K_REP_INT32: _enc_rep_int32,
    K_REP_STRING: _enc_rep_str,
    K_REP_MESSAGE: _enc_rep_message,
    K_MAP_STR_BYTES: _enc_map_str_bytes,
    K_MAP_INT32_MESSAGE: _enc_map_int32_message,
    K_NULLABLE_INT64: _enc_nullable_int,
    K_NULLABLE_INT32: _enc_nullable_int,
    K_NULLABLE_BOOL: _enc_nullable_bool,
}


# -- per-kind decoders ----------------------------------------------------
# Each takes (msg, field, buf, pos, end, depth, wire_type) with pos just after
# the tag and returns the position after the value.

_Decoder = Callable[[WireMessage, Field, bytes, int, int, int, int], int]


def _dec_int32(
    msg: WireMessage, f: Field, buf: bytes, pos: int, end: int, depth: int, wt: int
) -> int:
    value, pos = decode_varint(buf, pos)
    setattr(msg, f.name, to_int32(value))
    return pos


def _dec_int64(
    msg: WireMessage, f: Field, buf: bytes, pos: int, end: int, depth: int, wt: int
) -> int:
    value, pos = decode_varint(buf, pos)
    setattr(msg, f.name, to_int64(value))
    return pos


def _dec_uint64(
    msg: WireMessage, f: Field, buf: bytes, pos: int, end: int, depth: int, wt: int
) -> int:
    value, pos = decode_varint(buf, pos)
    setattr(msg, f.name, value)
    return pos


def _dec_bool(
    msg: WireMessage, f: Field, buf: bytes, pos: int, end: int, depth: int, wt: int
) -> int:
    value, pos = decode_varint(buf, pos)
    setattr(msg, f.name, value != 0)
    return pos


def enum_value(enum: type[IntEnum], value: int) -> int:
    """Return the enum member for ``value``, or the int if it is not one."""
    member: Optional[IntEnum] = enum._value2member_map_.get(value)  # type: ignore[assignment]
    return value if member is None else member


def _dec_enum(
    msg: WireMessage, f: Field, buf: bytes, pos: int, end: int, depth: int, wt: int
) -> int:
    value, pos = decode_varint(buf, pos)
    setattr(msg, f.name, enum_value(f.type, to_int32(value)))
    return pos


def _dec_str(
    msg: WireMessage, f: Field, buf: bytes, pos: int, end: int, depth: int, wt: int
) -> int:
    n, pos = read_length(buf, pos, end)
    setattr(msg, f.name, decode_str(buf, pos, pos + n))
    return pos + n


def _dec_bytes(
    msg: WireMessage, f: Field, buf: bytes, pos: int, end: int, depth: int, wt: int
) -> int:
    n, pos = read_length(buf, pos, end)
    setattr(msg, f.name, buf[pos : pos + n])
    return pos + n


def _dec_message(
    msg: WireMessage, f: Field, buf: bytes, pos: int, end: int, depth: int, wt: int
) -> int:
    # A singular message field seen twice is merged, as protobuf does.
    n, pos = read_length(buf, pos, end)
    sub = getattr(msg, f.name)
    if sub is None:
        sub = f.type()
        setattr(msg, f.name, sub)
    sub.merge_range(buf, pos, pos + n, depth + 1)
    return pos + n


def _dec_rep_int32(
    msg: WireMessage, f: Field, buf: bytes, pos: int, end: int, depth: int, wt: int
) -> int:
    items: list[int] = getattr(msg, f.name)
    if wt == WT_VARINT:
        value, pos = decode_varint(buf, pos)
        items.append(to_int32(value))
        return pos
    n, pos = read_length(buf, pos, end)
    stop = pos + n
    while pos < stop:
        value, pos = decode_varint(buf, pos)
        items.append(to_int32(value))
    if pos > stop:
        raise Malformed("packed varint runs past the end of its field")
    return pos


def _dec_rep_str(
    msg: WireMessage, f: Field, buf: bytes, pos: int, end: int, depth: int, wt: int
) -> int:
    n, pos = read_length(buf, pos, end)
    getattr(msg, f.name).append(decode_str(buf, pos, pos + n))
    return pos + n


def _dec_rep_message(
    msg: WireMessage, f: Field, buf: bytes, pos: int, end: int, depth: int, wt: int
) -> int:
    n, pos = read_length(buf, pos, end)
    sub = f.type()
    sub.merge_range(buf, pos, pos + n, depth + 1)
    getattr(msg, f.name).append(sub)
    return pos + n


def decode_str_bytes_entry(buf: bytes, pos: int, end: int) -> tuple[str, bytes]:
    """Parse one ``map<string, bytes>`` entry occupying ``buf[pos:end]``.

    A missing key or value means its default; unknown fields are skipped; a
    repeated key or value field: the last one wins.
    """
    kstart = kstop = 0
    value = b""
    while pos < end:
        tag, pos = decode_varint(buf, pos)
        if tag == 0x0A:
            n, pos = read_length(buf, pos, end)
            kstart = pos
            pos = kstop = pos + n
        elif tag == 0x12:
            n, pos = read_length(buf, pos, end)
            value = buf[pos : pos + n]
            pos += n
        else:
            number = tag >> 3
            if number in (1, 2) or number == 0 or number > 0x1FFFFFFF:
                raise Malformed(f"map entry: bad tag {tag}")
            pos = skip_field(buf, pos, end, tag & 7)
    if pos > end:
        raise IndexError
    key = decode_str(buf, kstart, kstop)
    return key, value


def _dec_map_str_bytes(
    msg: WireMessage, f: Field, buf: bytes, pos: int, end: int, depth: int, wt: int
) -> int:
    n, pos = read_length(buf, pos, end)
    key, value = decode_str_bytes_entry(buf, pos, pos + n)
    getattr(msg, f.name)[key] = value
    return pos + n


def _dec_map_int32_message(
    msg: WireMessage, f: Field, buf: bytes, pos: int, end: int, depth: int, wt: int
) -> int:
    n, pos = read_length(buf, pos, end)
    stop = pos + n
    key = 0
    value: Optional[WireMessage] = None
    while pos < stop:
        tag, pos = decode_varint(buf, pos)
        if tag == 0x08:
            raw, pos = decode_varint(buf, pos)
            key = to_int32(raw)
        elif tag == 0x12:
            n, pos = read_length(buf, pos, stop)
            if value is None:
                value = f.type()
            value.merge_range(buf, pos, pos + n, depth + 2)
            pos += n
        else:
            number = tag >> 3
            if number in (1, 2) or number == 0 or number > 0x1FFFFFFF:
                raise Malformed(f"map entry: bad tag {tag}")
            pos = skip_field(buf, pos, stop, tag & 7)
    if pos > stop:
        raise IndexError
    getattr(msg, f.name)[key] = f.type() if value is None else value
    return stop


def _dec_nullable(
    msg: WireMessage, f: Field, buf: bytes, pos: int, end: int, depth: int, wt: int
) -> int:
    # The wrapper is a message: a second occurrence merges into the first, so
    # an empty one keeps the earlier value (or sets the default if none).
    n, pos = read_length(buf, pos, end)
    stop = pos + n
    value = getattr(msg, f.name)
    if value is None:
        value = False if f.kind == K_NULLABLE_BOOL else 0
    while pos < stop:
        tag, pos = decode_varint(buf, pos)
        if tag == 0x08:
            raw, pos = decode_varint(buf, pos)
            if f.kind == K_NULLABLE_INT64:
                value = to_int64(raw)
            elif f.kind == K_NULLABLE_INT32:
                value = to_int32(raw)
            else:
                value = raw != 0
        else:
            number = tag >> 3
            if number == 1 or number == 0 or number > 0x1FFFFFFF:
                raise Malformed(f"{f.type.__name__}: bad tag {tag}")
            pos = skip_field(buf, pos, stop, tag & 7)
    if pos > stop:
        raise IndexError
    setattr(msg, f.name, value)
    return stop


_DECODERS: dict[int, _Decoder] = {
    K_INT32: _dec_int32,
    K_INT64: _dec_int64,
    K_UINT64: _dec_uint64,
    K_BOOL: _dec_bool,
    K_ENUM: _dec_enum,
    K_STRING: _dec_str,
    K_BYTES: _dec_bytes,
    K_MESSAGE: _dec_message,
    K_REP_INT32: _dec_rep_int32,
    K_REP_STRING: _dec_rep_str,
    K_REP_MESSAGE: _dec_rep_message,
    K_MAP_STR_BYTES: _dec_map_str_bytes,
    K_MAP_INT32_MESSAGE: _dec_map_int32_message,
    K_NULLABLE_INT64: _dec_nullable,
    K_NULLABLE_INT32: _dec_nullable,
    K_NULLABLE_BOOL: _dec_nullable,
}
