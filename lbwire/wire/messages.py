"""Hand-written fast paths for the Liftbridge messages on the client's hot paths.

The message classes are generated (``_generated.py``, from
``protos/liftbridge/api.proto`` by ``scripts/gen_wire.py``) and encode and
decode through the table-driven codec in ``_codec``. The subscribe loop decodes
one ``Message`` per streamed message, the publish path encodes one
``PublishRequest`` per publish, and acked or pipelined publishing decodes one
``PublishResponse`` (holding an ``Ack``) per message, so those four methods are
written out here by hand: no per-field function calls, one-byte tags and
lengths read inline. They were kept because timeit measured each faster than
the generic codec. Anything unusual falls back to the generic decoder, which
also words the errors. The tests check them against the generic codec and
against protobuf, byte for byte.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple, TypeVar, Union, cast

from ._codec import DecodeError, M, decode_str_bytes_entry, encode_str_bytes_map, enum_value
from ._generated import Ack, AckError, AckPolicy, Message, PublishRequest, PublishResponse
from ._primitives import (
    _CONT8,
    Malformed,
    _unpack_u64,
    as_bytes,
    decode_varint,
    decode_varint8,
    encode_varint,
    skip_field,
    to_int32,
)

__all__ = [
    "StreamedTails",
    "decode_ack_range",
    "decode_message_range",
    "decode_streamed",
    "split_publish_response",
    "streamed_fields",
]

_new = object.__new__
T = TypeVar("T")


def _decode_generic(cls: type[M], buf: bytes) -> M:
    """The table-driven decoder, for subclasses of the hand-tuned classes."""
    msg = cls()
    msg.merge_range(buf, 0, len(buf))
    return msg


def decode_message_range(buf: bytes, start: int = 0, end: Optional[int] = None) -> Message:
    """Decode a ``Message`` from ``buf[start:end]`` without copying that range.

    For the gRPC layer, which holds a whole DATA frame (length prefixes and
    all) in one ``bytes`` object. Raises ``DecodeError`` like
    ``Message.decode`` and ``ValueError`` if the range is outside ``buf``.
    """
    if end is None:
        end = len(buf)
    if not 0 <= start <= end <= len(buf):
        raise ValueError(f"range {start}:{end} is outside a buffer of {len(buf)} bytes")
    pos = start
    offset = timestamp = partition = 0
    key = value = b""
    stream = subject = reply_subject = ack_inbox = correlation_id = ""
    headers: dict[str, bytes] = {}
    ack_policy: int = AckPolicy.LEADER
    try:
        while pos < end:
            tag = buf[pos]
            pos += 1
            if tag & 7 == 2 and 0x12 <= tag <= 0x5A:  # fields 2..11, all known
                n = buf[pos]
                pos += 1
                if n >= 0x80:
                    b = buf[pos]
                    if b < 0x80:  # 128 B - 16 KiB, read inline
                        n = n & 0x7F | b << 7
                        pos += 1
                    else:
                        n, pos = decode_varint(buf, pos - 1)
                stop = pos + n
                if stop > end:
                    break  # the generic decoder below reports it
                if tag == 0x1A:
                    value = buf[pos:stop]
                elif tag == 0x2A:
                    stream = buf[pos:stop].decode()
                elif tag == 0x3A:
                    subject = buf[pos:stop].decode()
                elif tag == 0x4A:
                    # The usual entry: 0A klen key 12 vlen value, short lengths.
                    # The server adds a "reply" header with no value field (an
                    # empty value) to every message: 0A klen key, read inline
                    # too, which timeit measured faster than the entry decoder.
                    klen = buf[pos + 1]
                    kstop = pos + 2 + klen
                    if buf[pos] == 0x0A and klen < 0x80 and kstop == stop:
                        headers[buf[pos + 2 : kstop].decode()] = b""
                    elif (
                        buf[pos] == 0x0A
                        and klen < 0x80
                        and kstop + 2 <= stop
                        and buf[kstop] == 0x12
                        and buf[kstop + 1] == stop - kstop - 2 < 0x80
                    ):
                        headers[buf[pos + 2 : kstop].decode()] = buf[kstop + 2 : stop]
                    else:
                        hkey, hvalue = decode_str_bytes_entry(buf, pos, stop)
                        headers[hkey] = hvalue
                elif tag == 0x12:
                    key = buf[pos:stop]
                elif tag == 0x42:
                    reply_subject = buf[pos:stop].decode()
                elif tag == 0x52:
                    ack_inbox = buf[pos:stop].decode()
                else:  # 0x5A
                    correlation_id = buf[pos:stop].decode()
                pos = stop
            elif tag == 0x08 or tag == 0x20 or tag == 0x30 or tag == 0x60:
                if tag == 0x20 and pos + 8 <= end:
                    n, pos = decode_varint8(buf, pos)
                else:
                    n = buf[pos]
                    pos += 1
                    if n >= 0x80:
                        # Offsets up to 2**21 read inline, saving the call to
                        # decode_varint for most offsets.
                        b = buf[pos]
                        if b < 0x80:
                            n = n & 0x7F | b << 7
                            pos += 1
                        else:
                            b2 = buf[pos + 1]
                            if b2 < 0x80:
                                n = n & 0x7F | (b & 0x7F) << 7 | b2 << 14
                                pos += 2
                            else:
                                n, pos = decode_varint(buf, pos - 1)
                if tag == 0x20:
                    timestamp = n - 0x10000000000000000 if n >> 63 else n
                elif tag == 0x08:
                    offset = n - 0x10000000000000000 if n >> 63 else n
                elif tag == 0x30:
                    partition = to_int32(n)
                else:
                    ack_policy = enum_value(AckPolicy, to_int32(n))
            elif 0x68 <= tag < 0x80 and tag & 7 != 3 and tag & 7 != 4:
                pos = skip_field(buf, pos, end, tag & 7)  # unknown field 13..15
            else:
                break  # long tag, wrong wire type, group...: generic path
        else:
            if pos == end:
                msg: Message = _new(Message)
                msg.offset = offset
                msg.key = key
                msg.value = value
                msg.timestamp = timestamp
                msg.stream = stream
                msg.partition = partition
                msg.subject = subject
                msg.replySubject = reply_subject
                msg.headers = headers
                msg.ackInbox = ack_inbox
                msg.correlationId = correlation_id
                msg.ackPolicy = ack_policy
                return msg
    except (IndexError, UnicodeDecodeError, Malformed):
        pass
    # Anything unusual, every error included, goes through the generic decoder:
    # it handles the corner cases (long tags, unknown fields >= 16) and words
    # the error.
    msg = Message()
    msg.merge_range(buf, start, end)
    return msg


class StreamedTails:
    """What `decode_streamed` keeps of a subscription's messages from list to list.

    `known` holds, by their bytes, the fields after a message's timestamp,
    decoded: subject, partition, headers, stream, reply subject, correlation
    id (at most `_MAX_TAILS`: it starts over when full). `misses` counts the
    messages since one was found there.
    """

    __slots__ = ("known", "misses")

    def __init__(self) -> None:
        self.known: Dict[bytes, Tuple[str, int, Dict[str, bytes], str, str, str]] = {}
        self.misses = 0


_MAX_TAILS = 64
# After this many messages in a row whose tails were not known (a correlation
# id each, say), messages take the whole decoder at once, but one in _PROBE
# looks its tail up again: reading the start of a message for nothing would
# cost more than the lookups save.
_GIVE_UP = 16
_PROBE = 64


def decode_streamed(
    received: List[bytes],
    make: Callable[..., T],
    min_offset: int,
    tails: StreamedTails,
) -> Tuple[List[T], Optional[DecodeError]]:
    """Decode the ``Message``s of a subscription, skipping offsets below `min_offset`.

    Each becomes ``make(value, subject, offset, timestamp, key, partition,
    headers, stream, reply_subject, correlation_id)`` (the order of
    ``lbwire.types.Message``); every message gets a headers dict of its own.
    Returns those, up to the first malformed message, and its
    ``DecodeError`` (None if there is none).

    The server writes the fields in field order, and the fields after the
    timestamp (stream, partition, subject, headers) repeat from message to
    message of a partition (the headers in one of few orders): `tails`,
    kept by the caller across calls, holds them decoded by their bytes, so
    a message costs its offset, key, value and timestamp read inline and a
    lookup. Anything else goes through ``decode_message_range`` (at once,
    while tails keep being new: see `StreamedTails`).
    """
    out: List[T] = []
    append = out.append
    known = tails.known
    get = known.get
    misses = tails.misses
    unpack_u64 = _unpack_u64
    for buf in received:
        cached = None
        tail = -1
        # The usual shape, read inline: [08 offset] [12 key] 1A value 20
        # timestamp, then a tail of fields 5 and up seen before.
        if misses < _GIVE_UP or not misses % _PROBE:
            try:
                tag = buf[0]
                offset = 0
                pos = 1
                if tag == 0x08:
                    n = buf[1]
                    if n < 0x80:
                        pos = 2
                    elif buf[2] < 0x80:  # offsets up to 2**21 read inline
                        n = n & 0x7F | buf[2] << 7
                        pos = 3
                    elif buf[3] < 0x80:
                        n = n & 0x7F | (buf[2] & 0x7F) << 7 | buf[3] << 14
                        pos = 4
                    else:
                        n, pos = decode_varint(buf, 1)
                        if n >> 63:
                            n -= 0x10000000000000000
                    offset = n
                    tag = buf[pos]
                    pos += 1
                key = b""
                if tag == 0x12:
                    n = buf[pos]
                    if n < 0x80:
                        pos += 1
                    else:
                        n, pos = decode_varint(buf, pos)
                    key = buf[pos : pos + n]
                    pos += n
                    tag = buf[pos]
                    pos += 1
                if tag == 0x1A:
                    n = buf[pos]
                    if n < 0x80:
                        pos += 1
                    elif buf[pos + 1] < 0x80:  # 128 B - 16 KiB
                        n = n & 0x7F | buf[pos + 1] << 7
                        pos += 2
                    else:
                        n, pos = decode_varint(buf, pos)
                    stop = pos + n
                    if buf[stop] == 0x20 and stop + 9 <= len(buf):
                        value = buf[pos:stop]
                        x = unpack_u64(buf, stop + 1)[0]
                        if x & _CONT8 == _CONT8 and stop + 10 <= len(buf) and buf[stop + 9] < 0x80:
                            # Nine bytes, as every timestamp from 2004 to
                            # 2116: decode_varint8's steps, inline.
                            x &= 0x7F7F7F7F7F7F7F7F
                            x = (x & 0x007F007F007F007F) | (x >> 1 & 0x3F803F803F803F80)
                            x = (x & 0x00003FFF00003FFF) | (x >> 2 & 0x0FFFC0000FFFC000)
                            timestamp = (x & 0x0FFFFFFF) | (x >> 4 & 0x00FFFFFFF0000000)
                            timestamp |= buf[stop + 9] << 56
                            tail = stop + 10
                        else:
                            timestamp, tail = decode_varint8(buf, stop + 1)
                            if timestamp >> 63:
                                timestamp -= 0x10000000000000000
                        cached = get(buf[tail:])
            except (IndexError, Malformed):
                cached = None
                tail = -1
        if cached is not None:
            misses = 0
            if offset < min_offset:
                continue
            subject, partition, headers, stream, reply_subject, correlation_id = cached
            append(
                make(
                    value,
                    subject,
                    offset,
                    timestamp,
                    key,
                    partition,
                    headers.copy(),
                    stream,
                    reply_subject,
                    correlation_id,
                )
            )
            continue
        misses += 1
        try:
            msg = decode_message_range(buf, 0, len(buf))
        except DecodeError as exc:
            tails.misses = misses
            return out, exc
        if tail >= 0 and _is_tail(buf, tail):
            if len(known) >= _MAX_TAILS:
                known.clear()
            known[buf[tail:]] = (
                msg.subject,
                msg.partition,
                dict(msg.headers),
                msg.stream,
                msg.replySubject,
                msg.correlationId,
            )
        if msg.offset < min_offset:
            continue
        append(make(*streamed_fields(msg)))
    tails.misses = misses
    return out, None


def streamed_fields(
    msg: Message,
) -> Tuple[bytes, str, int, int, bytes, int, Dict[str, bytes], str, str, str]:
    """What a subscriber sees of `msg`, in the order `decode_streamed` gives to `make`."""
    return (
        msg.value,
        msg.subject,
        msg.offset,
        msg.timestamp,
        msg.key,
        msg.partition,
        msg.headers,
        msg.stream,
        msg.replySubject,
        msg.correlationId,
    )


def _is_tail(buf: bytes, pos: int) -> bool:
    """Whether ``buf[pos:]`` (what follows the timestamp) holds only fields 5 to 15.

    Then its fields decode the same after any offset, key, value and
    timestamp: ``decode_streamed`` may keep them by their bytes.
    """
    end = len(buf)
    try:
        while pos < end:
            tag = buf[pos]
            if tag >= 0x80 or tag >> 3 < 5:
                return False
            pos = skip_field(buf, pos + 1, end, tag & 7)
    except (IndexError, Malformed):
        return False
    return pos == end


_ACK_POLICIES: Dict[int, AckPolicy] = {int(p): p for p in AckPolicy}
#: An ack's first three fields (stream, partition subject, message subject),
#: decoded, by their bytes (at most `_MAX_TAILS`: it starts over when full).
_ACK_HEADS: Dict[bytes, Tuple[str, str, str]] = {}
# (An enum member read from its class costs a lookup each time on CPython 3.11.)
_LEADER = AckPolicy.LEADER
_ACK_OK = AckError.OK


def _ack_fast(buf: bytes, pos: int, end: int) -> Optional[Ack]:
    """Decode ``buf[pos:end]`` as an ``Ack`` if it is the usual shape, else return None.

    None, or an IndexError, UnicodeDecodeError or Malformed, means: ask the
    generic decoder (which also words the error).

    The server writes an ack's fields in field number order, the strings
    short (below 128 bytes), the timestamps nine bytes long, and leaves out
    an OK ack error: that layout is read in one pass without a loop; any
    other goes through `_ack_fields`.
    """
    start = pos
    try:
        # 1 stream, 2 partition subject, 3 message subject: lengths below
        # 128, the same on every ack of a partition, decoded once each.
        second = pos + 2 + buf[pos + 1]
        third = second + 2 + buf[second + 1]
        stop = third + 2 + buf[third + 1]
        if (
            buf[pos] != 0x0A
            or buf[second] != 0x12
            or buf[third] != 0x1A
            or (buf[pos + 1] | buf[second + 1] | buf[third + 1]) >= 0x80
        ):
            return _ack_fields(buf, start, end)
        head = buf[pos:stop]
        names = _ACK_HEADS.get(head)
        if names is None:
            names = (
                buf[pos + 2 : second].decode(),
                buf[second + 2 : third].decode(),
                buf[third + 2 : stop].decode(),
            )
            if len(_ACK_HEADS) >= _MAX_TAILS:
                _ACK_HEADS.clear()
            _ACK_HEADS[head] = names
        stream, partition_subject, msg_subject = names
        pos = stop
        # 4 offset (absent when 0): offsets below 2**21 read inline.
        offset = 0
        if buf[pos] == 0x20:
            n = buf[pos + 1]
            if n < 0x80:
                pos += 2
            elif buf[pos + 2] < 0x80:
                n = n & 0x7F | buf[pos + 2] << 7
                pos += 3
            elif buf[pos + 3] < 0x80:
                n = n & 0x7F | (buf[pos + 2] & 0x7F) << 7 | buf[pos + 3] << 14
                pos += 4
            else:
                n, pos = decode_varint(buf, pos + 1)
                if n >> 63:
                    n -= 0x10000000000000000
            offset = n
        # 5 ack inbox (the server's own on every ack).
        ack_inbox = ""
        if buf[pos] == 0x2A:
            if buf[pos + 1] >= 0x80:
                return _ack_fields(buf, start, end)
            stop = pos + 2 + buf[pos + 1]
            ack_inbox = buf[pos + 2 : stop].decode()
            pos = stop
        # 6 correlation id; 7 ack policy (absent when LEADER).
        if buf[pos] != 0x32 or buf[pos + 1] >= 0x80:
            return _ack_fields(buf, start, end)
        stop = pos + 2 + buf[pos + 1]
        correlation_id = buf[pos + 2 : stop].decode()
        pos = stop
        ack_policy: int = _LEADER
        if buf[pos] == 0x38:
            policy = _ACK_POLICIES.get(buf[pos + 1])
            if policy is None:
                return _ack_fields(buf, start, end)
            ack_policy = policy
            pos += 2
        # 8 reception and 9 commit timestamps: nine-byte varints (2004-2116).
        if buf[pos] != 0x40 or pos + 20 > end or buf[pos + 9] >= 0x80 or buf[pos + 10] != 0x48:
            return _ack_fields(buf, start, end)
        x = _unpack_u64(buf, pos + 1)[0]
        y = _unpack_u64(buf, pos + 11)[0]
        if x & _CONT8 != _CONT8 or y & _CONT8 != _CONT8 or buf[pos + 19] >= 0x80:
            return _ack_fields(buf, start, end)
        if pos + 20 != end:
            return _ack_fields(buf, start, end)
        # (Nine bytes hold at most 63 bits: never negative.)
        reception = _nine_bytes(x, buf[pos + 9])
        commit = _nine_bytes(y, buf[pos + 19])
    except IndexError:
        return _ack_fields(buf, start, end)
    return _new_ack(
        stream,
        partition_subject,
        msg_subject,
        offset,
        ack_inbox,
        correlation_id,
        ack_policy,
        reception,
        commit,
        _ACK_OK,
    )


def _nine_bytes(x: int, last: int) -> int:
    """A nine-byte varint: its first eight bytes as a little-endian `x`, then `last`.

    ``decode_varint8``'s steps for the one length every nanosecond
    timestamp from 2004 to 2116 has, without its checks.
    """
    x &= 0x7F7F7F7F7F7F7F7F
    x = (x & 0x007F007F007F007F) | (x >> 1 & 0x3F803F803F803F80)
    x = (x & 0x00003FFF00003FFF) | (x >> 2 & 0x0FFFC0000FFFC000)
    return (x & 0x0FFFFFFF) | (x >> 4 & 0x00FFFFFFF0000000) | last << 56


def _new_ack(
    stream: str,
    partition_subject: str,
    msg_subject: str,
    offset: int,
    ack_inbox: str,
    correlation_id: str,
    ack_policy: int,
    reception: int,
    commit: int,
    ack_error: int,
) -> Ack:
    """An ``Ack`` of these decoded fields (without ``Ack.__init__``'s defaults)."""
    ack: Ack = _new(Ack)
    ack.stream = stream
    ack.partitionSubject = partition_subject
    ack.msgSubject = msg_subject
    ack.offset = offset
    ack.ackInbox = ack_inbox
    ack.correlationId = correlation_id
    ack.ackPolicy = ack_policy
    ack.receptionTimestamp = reception
    ack.commitTimestamp = commit
    ack.ackError = ack_error
    return ack


def _ack_fields(buf: bytes, pos: int, end: int) -> Optional[Ack]:
    """`_ack_fast` for any order and any subset of the known fields (None: anything else)."""
    offset = reception = commit = 0
    stream = partition_subject = msg_subject = ack_inbox = correlation_id = ""
    ack_policy: int = AckPolicy.LEADER
    ack_error: int = AckError.OK
    while pos < end:
        tag = buf[pos]
        pos += 1
        if tag & 7 == 2 and 0x0A <= tag <= 0x32 and tag != 0x22:  # string fields 1-3, 5, 6
            n = buf[pos]
            pos += 1
            if n >= 0x80:
                n, pos = decode_varint(buf, pos - 1)
            stop = pos + n
            if stop > end:
                return None
            if tag == 0x0A:
                stream = buf[pos:stop].decode()
            elif tag == 0x12:
                partition_subject = buf[pos:stop].decode()
            elif tag == 0x1A:
                msg_subject = buf[pos:stop].decode()
            elif tag == 0x2A:
                ack_inbox = buf[pos:stop].decode()
            else:  # 0x32
                correlation_id = buf[pos:stop].decode()
            pos = stop
        elif tag == 0x40 or tag == 0x48:  # ns timestamps: 9-byte varints
            if pos + 8 <= end:
                n, pos = decode_varint8(buf, pos)
            else:
                n, pos = decode_varint(buf, pos)
            if tag == 0x40:
                reception = n - 0x10000000000000000 if n >> 63 else n
            else:
                commit = n - 0x10000000000000000 if n >> 63 else n
        elif tag == 0x20 or tag == 0x38 or tag == 0x50:
            n = buf[pos]
            pos += 1
            if n >= 0x80:
                n, pos = decode_varint(buf, pos - 1)
            if tag == 0x20:
                offset = n - 0x10000000000000000 if n >> 63 else n
            elif tag == 0x38:
                ack_policy = enum_value(AckPolicy, to_int32(n))
            else:
                ack_error = enum_value(AckError, to_int32(n))
        else:
            return None  # unknown field, long tag, wrong wire type...
    if pos != end:
        return None
    return _new_ack(
        stream,
        partition_subject,
        msg_subject,
        offset,
        ack_inbox,
        correlation_id,
        ack_policy,
        reception,
        commit,
        ack_error,
    )


def split_publish_response(data: bytes) -> Optional[Tuple[str, int, int]]:
    """A PublishResponse's correlation id, and where its ack lies, without decoding the ack.

    For the usual reply, an ack and a correlation id, at most once each:
    ``(correlation_id, start, stop)``, the ack being ``data[start:stop]``
    (``Ack.decode`` it when it is read; ``start`` is -1 without an ack, and
    the id "" without one). None for anything else (a refusal, unknown
    fields, malformed input): ``PublishResponse.decode`` then.
    """
    end = len(data)
    try:
        # The usual reply, read without a loop: an ack below 16 KiB, then a
        # correlation id below 128 bytes.
        if data[0] == 0x0A:
            n = data[1]
            start = 2
            if n >= 0x80:
                n = n & 0x7F | data[2] << 7
                start = 3 if data[2] < 0x80 else end
            stop = start + n
            if data[stop] == 0x1A and data[stop + 1] < 0x80 and stop + 2 + data[stop + 1] == end:
                return data[stop + 2 : end].decode(), start, stop
    except IndexError:
        pass  # (the loop below tells)
    except UnicodeDecodeError:
        return None
    pos = 0
    start = stop_ack = -1
    correlation_id: Optional[str] = None
    try:
        while pos < end:
            tag = data[pos]
            n = data[pos + 1]
            pos += 2
            if n >= 0x80:
                n, pos = decode_varint(data, pos - 1)
            stop = pos + n
            if stop > end:
                return None
            if tag == 0x0A and start < 0:
                start, stop_ack = pos, stop
            elif tag == 0x1A and correlation_id is None:
                correlation_id = data[pos:stop].decode()
            else:
                return None
            pos = stop
    except (IndexError, UnicodeDecodeError, Malformed):
        return None
    return correlation_id or "", start, stop_ack


def _publish_response_fast(buf: bytes, end: int) -> Optional[PublishResponse]:
    """``PublishResponse.decode``'s fast path: an ack and a correlation id, at most once each."""
    parts = split_publish_response(buf)
    if parts is None:
        return None
    correlation_id, start, stop = parts
    ack: Optional[Ack] = None
    if start >= 0:
        ack = _ack_fast(buf, start, stop)
        if ack is None:
            return None
    response: PublishResponse = _new(PublishResponse)
    response.ack = ack
    response.asyncError = None
    response.correlationId = correlation_id
    return response


#: A publish request's stream field (tag, length, name), by stream name (at
#: most `_MAX_TAILS`: it starts over when full).
_STREAM_FIELDS: Dict[str, bytes] = {}
#: The ackPolicy field of ALL and NONE (LEADER, 0, is left out).
_ACK_POLICY_FIELDS = {1: b"\x40\x01", 2: b"\x40\x02"}
#: expectedOffset -1 (no check: what every publish without one sends).
_EXPECT_NEXT = b"\x48" + encode_varint(-1)


def _encode_publish_request(self: PublishRequest) -> bytes:
    """Serialize a ``PublishRequest`` to protobuf bytes, identical to protobuf's."""
    out = bytearray()
    v: bytes = self.key
    if v:
        n = len(v)
        if n < 0x80:
            out += b"\x0a"
            out.append(n)
        else:
            out += b"\x0a" + encode_varint(n)
        out += v
    v = self.value
    if v:
        n = len(v)
        if n < 0x80:
            out += b"\x12"
            out.append(n)
        else:
            out += b"\x12" + encode_varint(n)
        out += v
    s = self.stream
    if s:
        field = _STREAM_FIELDS.get(s)
        if field is None:
            v = s.encode()
            field = b"\x1a" + encode_varint(len(v)) + v
            if len(_STREAM_FIELDS) >= _MAX_TAILS:
                _STREAM_FIELDS.clear()
            _STREAM_FIELDS[s] = field
        out += field
    i = self.partition
    if i:
        out += b"\x20" + encode_varint(i)
    if self.headers:
        encode_str_bytes_map(out, b"\x2a", self.headers)
    s = self.ackInbox
    if s:
        v = s.encode()
        out += b"\x32" + encode_varint(len(v))
        out += v
    s = self.correlationId
    if s:
        v = s.encode()
        n = len(v)
        if n < 0x80:
            out += b"\x3a"
            out.append(n)
        else:
            out += b"\x3a" + encode_varint(n)
        out += v
    i = self.ackPolicy
    if i:
        out += b"\x40" + encode_varint(i) if i > 2 or i < 0 else _ACK_POLICY_FIELDS[i]
    i = self.expectedOffset
    if i == -1:
        out += _EXPECT_NEXT
    elif i:
        out += b"\x48" + encode_varint(i)
    return bytes(out)


def _decode_message(cls: type[M], data: Union[bytes, bytearray, memoryview]) -> M:
    """Parse protobuf bytes into a new ``Message``.

    Raises ``DecodeError`` on malformed input.
    """
    buf = as_bytes(data)
    if cls is not Message:  # subclasses take the generic path
        return _decode_generic(cls, buf)
    return cast(M, decode_message_range(buf, 0, len(buf)))


def _decode_ack(cls: type[M], data: Union[bytes, bytearray, memoryview]) -> M:
    """Parse protobuf bytes into a new ``Ack``.

    Raises ``DecodeError`` on malformed input.
    """
    buf = as_bytes(data)
    if cls is not Ack:  # subclasses take the generic path
        return _decode_generic(cls, buf)
    return cast(M, decode_ack_range(buf, 0, len(buf)))


def decode_ack_range(buf: bytes, start: int, end: int) -> Ack:
    """Decode ``buf[start:end]`` as an ``Ack`` (a range `split_publish_response` found).

    Raises ``DecodeError`` on malformed input.
    """
    try:
        ack = _ack_fast(buf, start, end)
    except (IndexError, UnicodeDecodeError, Malformed):
        ack = None
    if ack is None:
        ack = Ack()
        ack.merge_range(buf, start, end)
    return ack


def _decode_publish_response(cls: type[M], data: Union[bytes, bytearray, memoryview]) -> M:
    """Parse protobuf bytes into a new ``PublishResponse``.

    Raises ``DecodeError`` on malformed input.
    """
    buf = as_bytes(data)
    if cls is not PublishResponse:  # subclasses take the generic path
        return _decode_generic(cls, buf)
    end = len(buf)
    try:
        response = _publish_response_fast(buf, end)
    except (IndexError, UnicodeDecodeError, Malformed):
        response = None
    if response is None:
        response = PublishResponse()
        response.merge_range(buf, 0, end)
    return cast(M, response)


# The generated classes get the hand-written methods here, once, when
# lbwire.wire is imported (it imports this module); _generated.py marks each.
Message.decode = classmethod(_decode_message)  # type: ignore[method-assign, assignment]
Ack.decode = classmethod(_decode_ack)  # type: ignore[method-assign, assignment]
PublishResponse.decode = classmethod(_decode_publish_response)  # type: ignore[method-assign, assignment]
PublishRequest.encode = _encode_publish_request  # type: ignore[method-assign, assignment]
