"""lbwire's HPACK (RFC 7541) against python-hyper's hpack as the reference implementation.

hpack is a test dependency only: it encodes with Huffman coding and indexes
as it likes, which exercises every representation lbwire's decoder must read,
and it decodes what lbwire's encoder writes.
"""

from __future__ import annotations

from typing import Any, List, Tuple

import hpack
import pytest
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.table import HeaderTable
from hypothesis import given, settings
from hypothesis import strategies as st

from lbwire.grpc._hpack import (
    STATIC_TABLE,
    HeaderDecoder,
    HeaderEncoder,
    HPACKError,
    OversizedHeaderList,
    huffman_decode,
)

huffman = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)

NAMES = st.sampled_from(
    [b":status", b"content-type", b"grpc-status", b"grpc-message", b"x-a", b"x-b", b"te"]
)
VALUES = st.one_of(
    st.sampled_from([b"", b"0", b"200", b"application/grpc", b"trailers", b"v" * 300]),
    st.binary(max_size=40),
)
BLOCKS = st.lists(st.lists(st.tuples(NAMES, VALUES), min_size=1, max_size=6), max_size=25)
SIZES = st.lists(st.sampled_from([None, None, 0, 64, 256, 4096]), max_size=25)


def test_static_table_is_rfc_7541s() -> None:
    assert tuple(HeaderTable.STATIC_TABLE) == STATIC_TABLE


@given(st.binary(max_size=200))
@settings(max_examples=500, deadline=None)
def test_huffman_decoding_reverses_the_rfc_code(data: bytes) -> None:
    assert huffman_decode(huffman.encode(data)) == data


@pytest.mark.parametrize(
    ("coded", "why"),
    [
        (b"\xff", "eight bits of padding"),
        (b"\x00", "padding of zeros (after '0' coded 00000: 000 is no EOS prefix)"),
        (b"\xff\xff\xff\xfc", "the EOS symbol (30 one bits) in the string"),
        (b"\x1f\xff", "a code cut off by the end of the string"),
    ],
)
def test_invalid_huffman_strings_are_refused(coded: bytes, why: str) -> None:
    with pytest.raises(HPACKError):
        huffman_decode(coded)


@given(BLOCKS, SIZES)
@settings(max_examples=300, deadline=None)
def test_decoding_what_hpack_encodes(
    blocks: List[List[Tuple[bytes, bytes]]], sizes: List[Any]
) -> None:
    # hpack Huffman-codes and indexes everything: all representations but the
    # literals without indexing, which test_decoding_every_literal_kind covers.
    encoder = hpack.Encoder()
    ours = HeaderDecoder(1 << 20)
    for i, headers in enumerate(blocks * 2):  # again: now mostly indexed
        if i < len(sizes) and sizes[i] is not None:
            encoder.header_table_size = sizes[i]
        block = encoder.encode(headers)
        decoded, size = ours.decode(block)
        assert decoded == headers
        assert size == sum(len(n) + len(v) + 32 for n, v in headers)


def test_decoding_every_literal_kind() -> None:
    ours = HeaderDecoder(1 << 20)
    # Without indexing (0000), never indexed (0001), with a static name index
    # (content-type: 31) and with a literal name; none enters the table.
    block = b"\x0f\x10\x04text" + b"\x10\x03x-a\x01v" + b"\x00\x03x-b\x01w"
    assert ours.decode(block)[0] == [(b"content-type", b"text"), (b"x-a", b"v"), (b"x-b", b"w")]
    with pytest.raises(HPACKError, match="not in the table"):
        ours.decode(b"\xbe")  # index 62: the dynamic table is still empty


@given(BLOCKS, SIZES)
@settings(max_examples=300, deadline=None)
def test_hpack_decodes_what_lbwire_encodes(
    blocks: List[List[Tuple[bytes, bytes]]], sizes: List[Any]
) -> None:
    # Through evictions and table size updates, hpack (and lbwire's own
    # decoder) read back exactly what was encoded, cached or not.
    ours = HeaderEncoder()
    reference = hpack.Decoder()
    own_decoder = HeaderDecoder(1 << 20)
    for i, headers in enumerate(blocks * 2):
        if i < len(sizes) and sizes[i] is not None:
            ours.set_table_size(sizes[i])
        if i % 2:
            block = ours.encode(headers)
        else:
            # The key must identify the headers, as a method's path does.
            block = ours.encode_cached(tuple(b"=".join(h) for h in headers), headers)
        assert reference.decode(block, raw=True) == headers
        assert own_decoder.decode(block)[0] == headers


def test_a_methods_request_headers_shrink_to_one_byte_per_field() -> None:
    headers = [(b":method", b"POST"), (b":path", b"/proto.API/Publish"), (b"te", b"trailers")]
    encoder = HeaderEncoder()
    first = encoder.encode_cached((b"/proto.API/Publish",), headers)
    second = encoder.encode_cached((b"/proto.API/Publish",), headers)
    assert len(second) == 3 < len(first)
    assert encoder.encode_cached((b"/proto.API/Publish",), headers) is second  # cached
    assert hpack.Decoder().decode(first + second, raw=True) == headers * 2


def test_a_table_size_update_after_a_field_is_refused() -> None:
    with pytest.raises(HPACKError, match="after a header field"):
        HeaderDecoder(1 << 20).decode(b"\x88\x20")  # :status 200, then size 0


def test_the_header_list_limit_stops_decoding_at_once() -> None:
    decoder = HeaderDecoder(100)
    with pytest.raises(OversizedHeaderList):
        decoder.decode(b"\x88" * 10_000)  # 10,000 x ":status: 200" (42 bytes each)


def test_an_entry_larger_than_the_table_empties_it() -> None:
    encoder, decoder = HeaderEncoder(), HeaderDecoder(1 << 20)
    small = [(b"x-a", b"1")]
    decoder.decode(encoder.encode(small))
    big = [(b"x-big", b"b" * 5000)]
    decoder.decode(encoder.encode(big))
    # Neither table holds x-a any more: it goes out as a literal again.
    again = encoder.encode(small)
    assert again.startswith(b"\x40")
    assert decoder.decode(again)[0] == small


def test_two_size_changes_between_blocks_send_the_smallest_then_the_last() -> None:
    # RFC 7541 4.2: a decoder may hold the encoder to the smallest size since
    # the last block (nghttp2 does), so that one is signalled first.
    encoder = HeaderEncoder()
    encoder.set_table_size(1024)
    encoder.set_table_size(2048)
    block = encoder.encode([(b"x-a", b"1")])
    assert block.startswith(b"\x3f\xe1\x07" + b"\x3f\xe1\x0f")  # 1024, then 2048
    assert hpack.Decoder().decode(block, raw=True) == [(b"x-a", b"1")]
    encoder.set_table_size(0)
    encoder.set_table_size(4096)
    assert encoder.encode([(b"x-a", b"1")]).startswith(b"\x20\x3f\xe1\x1f")  # 0, then 4096


def test_credentials_are_never_indexed() -> None:
    encoder, reference = HeaderEncoder(), hpack.Decoder()
    headers = [(b"authorization", b"Bearer secret")]
    for _ in range(2):  # the same literal each time: no table holds it
        block = encoder.encode(headers)
        assert block == b"\x1f\x08\x0dBearer secret"  # 0001 + name index 23
        (field,) = reference.decode(block, raw=True)
        assert isinstance(field, hpack.NeverIndexedHeaderTuple)
        assert field == headers[0]


def test_only_small_blocks_are_cached() -> None:
    decoder = HeaderDecoder(1 << 20)
    small = b"\x88"  # :status 200
    assert decoder.decode(small)[0] is decoder.decode(small)[0]
    large = b"\x00\x03x-a\x7f\xd1\x0e" + b"v" * 2_000  # a 2,000-byte literal, not indexed
    first, second = decoder.decode(large)[0], decoder.decode(large)[0]
    assert first == second == [(b"x-a", b"v" * 2_000)]
    assert first is not second


def test_a_block_that_fails_after_changing_the_table_drops_the_cache() -> None:
    decoder = HeaderDecoder(1 << 20)
    decoder.decode(b"\x40\x01a\x01b")  # inserts a: b
    assert decoder.decode(b"\xbe")[0] == [(b"a", b"b")]  # index 62, now cached
    with pytest.raises(HPACKError):
        decoder.decode(b"\x40\x01c\x01d" + b"\x80")  # inserts c: d, then index 0
    assert decoder.decode(b"\xbe")[0] == [(b"c", b"d")]
