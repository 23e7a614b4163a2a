"""Protobuf reference classes built from the committed descriptor, and converters.

The reference classes come from ``api_descriptor.binpb`` through
``descriptor_pool`` + ``message_factory``, so the tests need only the protobuf
runtime (any implementation: upb, or pure Python on PyPy), never grpcio-tools.
Hypothesis strategies are derived from each class's field table; the schema
test checks those tables against the descriptor, so the strategies cover the
real schema.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message as PbMessage
from hypothesis import strategies as st

import lbwire.wire as wire
from lbwire.wire import _codec as c

DESCRIPTOR_PATH = Path(__file__).with_name("api_descriptor.binpb")


def _load_pool() -> descriptor_pool.DescriptorPool:
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(DESCRIPTOR_PATH.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in fds.file:
        pool.Add(file)
    return pool


POOL = _load_pool()
FILE = POOL.FindFileByName("liftbridge/api.proto")

MESSAGE_CLASSES: list[type[c.WireMessage]] = [
    getattr(wire, name) for name in FILE.message_types_by_name
]


def pb_class(cls: type[c.WireMessage]) -> Any:
    """The protobuf class for one of ours (same name in package ``proto``)."""
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(f"proto.{cls.__name__}"))


def to_pb(msg: c.WireMessage) -> PbMessage:
    """Build the equivalent protobuf message."""
    pb = pb_class(type(msg))()
    for f in type(msg).fields():
        value = getattr(msg, f.name)
        target = getattr(pb, f.name)
        if f.kind == c.K_MESSAGE:
            if value is not None:
                target.CopyFrom(to_pb(value))
        elif f.kind in (c.K_REP_INT32, c.K_REP_STRING):
            target.extend(value)
        elif f.kind == c.K_REP_MESSAGE:
            for item in value:
                target.add().CopyFrom(to_pb(item))
        elif f.kind == c.K_MAP_STR_BYTES:
            target.update(value)
        elif f.kind == c.K_MAP_INT32_MESSAGE:
            for key, item in value.items():
                target[key].CopyFrom(to_pb(item))
        elif f.kind in (c.K_NULLABLE_INT64, c.K_NULLABLE_INT32, c.K_NULLABLE_BOOL):
            if value is not None:
                target.SetInParent()
                target.value = value
        else:
            setattr(pb, f.name, int(value) if f.kind == c.K_ENUM else value)
    return pb


def from_pb(cls: type[c.WireMessage], pb: PbMessage) -> c.WireMessage:
    """Build our message from a protobuf one."""
    values: dict[str, Any] = {}
    for f in cls._FIELDS:
        value = getattr(pb, f.name)
        if f.kind == c.K_MESSAGE:
            values[f.name] = from_pb(f.type, value) if pb.HasField(f.name) else None
        elif f.kind in (c.K_REP_INT32, c.K_REP_STRING):
            values[f.name] = list(value)
        elif f.kind == c.K_REP_MESSAGE:
            values[f.name] = [from_pb(f.type, item) for item in value]
        elif f.kind == c.K_MAP_STR_BYTES:
            values[f.name] = dict(value)
        elif f.kind == c.K_MAP_INT32_MESSAGE:
            values[f.name] = {k: from_pb(f.type, v) for k, v in value.items()}
        elif f.kind in (c.K_NULLABLE_INT64, c.K_NULLABLE_INT32, c.K_NULLABLE_BOOL):
            values[f.name] = value.value if pb.HasField(f.name) else None
        else:
            values[f.name] = value
    return cls(**values)


# -- strategies -------------------------------------------------------------

INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
UINT64 = st.integers(0, 2**64 - 1)
# Mostly short strings, sometimes past 127 bytes (two-byte length prefixes).
TEXT = st.text(max_size=12) | st.text(min_size=100, max_size=200)
BINARY = st.binary(max_size=12) | st.binary(min_size=120, max_size=300)


def _enum(enum: type[IntEnum]) -> st.SearchStrategy[int]:
    # proto3 enums are open: any int32 is a valid value on the wire.
    return st.sampled_from(list(enum)) | INT32


def field_strategy(f: c.Field) -> st.SearchStrategy[Any]:
    """Values of one field, covering defaults, extremes and long lengths."""
    kind = f.kind
    if kind == c.K_INT32:
        return INT32
    if kind == c.K_INT64:
        return INT64
    if kind == c.K_UINT64:
        return UINT64
    if kind == c.K_BOOL:
        return st.booleans()
    if kind == c.K_ENUM:
        return _enum(f.type)
    if kind == c.K_STRING:
        return TEXT
    if kind == c.K_BYTES:
        return BINARY
    if kind == c.K_MESSAGE:
        return st.none() | st.deferred(lambda: message_strategy(f.type))
    if kind == c.K_REP_INT32:
        return st.lists(INT32, max_size=5)
    if kind == c.K_REP_STRING:
        return st.lists(TEXT, max_size=3)
    if kind == c.K_REP_MESSAGE:
        return st.lists(st.deferred(lambda: message_strategy(f.type)), max_size=2)
    if kind == c.K_MAP_STR_BYTES:
        return st.dictionaries(TEXT, BINARY, max_size=3)
    if kind == c.K_MAP_INT32_MESSAGE:
        return st.dictionaries(INT32, st.deferred(lambda: message_strategy(f.type)), max_size=2)
    if kind == c.K_NULLABLE_INT64:
        return st.none() | INT64
    if kind == c.K_NULLABLE_INT32:
        return st.none() | INT32
    if kind == c.K_NULLABLE_BOOL:
        return st.none() | st.booleans()
    raise AssertionError(f"no strategy for kind {kind}")


_STRATEGIES: dict[type[c.WireMessage], st.SearchStrategy[Any]] = {}


def message_strategy(cls: type[c.WireMessage]) -> st.SearchStrategy[Any]:
    """Instances of ``cls`` with any field values (each field often default)."""
    if cls not in _STRATEGIES:
        fields = {f.name: st.just(getattr(cls(), f.name)) | field_strategy(f) for f in cls._FIELDS}
        # The all-default message (an empty encoding) is a case of its own.
        _STRATEGIES[cls] = st.builds(cls) | st.builds(cls, **fields)
    return _STRATEGIES[cls]


def unknown_field_strategy() -> st.SearchStrategy[bytes]:
    """One well-formed field with a number no Liftbridge message uses."""
    number = st.integers(19, 2**29 - 1) | st.sampled_from([19, 100, 2**29 - 1])
    value = st.one_of(
        st.tuples(st.just(0), UINT64.map(c.encode_varint)),
        st.tuples(st.just(1), st.binary(min_size=8, max_size=8)),
        st.tuples(
            st.just(2),
            st.binary(max_size=20).map(lambda b: c.encode_varint(len(b)) + b),
        ),
        st.tuples(st.just(5), st.binary(min_size=4, max_size=4)),
    )
    return st.builds(lambda n, wv: c.encode_varint(n << 3 | wv[0]) + wv[1], number, value)
