"""create_stream sends only the options the caller set: the server's defaults apply to the rest.

The server's configuration turns compaction on for every stream
(`streams.compact.enabled: true`, server/config.go). Nothing the server
exposes (metadata, the activity stream's CreateStreamOp) reports a stream's
compaction setting, so the tests observe it by its effect: the log cleaner
drops older messages of a key only on a stream that compacts.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from client_support import read_all
from helpers import wait_until

from lbwire import wire
from lbwire.client import LiftbridgeClient
from lbwire.testing import LiftbridgeServer

pytestmark = [pytest.mark.anyio, pytest.mark.server]

KEYED = [(b"a", b"a1"), (b"b", b"b1"), (b"a", b"a2"), (b"b", b"b2"), (b"c", b"c1")]
COMPACTED = [b"a2", b"b2", b"c1"]


@pytest.fixture(scope="module")
def compacting_server() -> Iterator[LiftbridgeServer]:
    """A server whose streams compact unless created with compaction off."""
    with LiftbridgeServer(config_overrides={"streams.compact.enabled": True}) as server:
        yield server


async def _create_and_fill(client: LiftbridgeClient, name: str, **kwargs: object) -> None:
    # Segments of one message and a cleaner every second: compaction shows soon.
    await client.create_stream(
        name, segment_max_bytes=1, cleaner_interval=1, wait_for_stream=True, **kwargs
    )
    for key, value in KEYED:
        await client.publish(value, stream=name, key=key)


async def test_stream_created_without_enable_compact_follows_the_server_default(
    compacting_server: LiftbridgeServer, stream_name: str
) -> None:
    off, default = f"{stream_name}-off", f"{stream_name}-default"
    async with LiftbridgeClient([compacting_server.broker]) as client:
        # Created first, so its cleaner has run at least as often as the other's.
        await _create_and_fill(client, off, enable_compact=False)
        await _create_and_fill(client, default)

        async def compacted() -> bool:
            return [m.value for m in await read_all(client, default)] == COMPACTED

        await wait_until(compacted, "the cleaner compacted the stream created without options")
        # An explicit False still turns the server's default off.
        assert [m.value for m in await read_all(client, off)] == [v for _, v in KEYED]


async def test_create_stream_sends_no_option_the_caller_did_not_set(
    compacting_server: LiftbridgeServer, stream_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[bytes] = []
    real = wire.CreateStreamRequest.encode

    def encode(self: wire.CreateStreamRequest) -> bytes:
        data = real(self)
        sent.append(data)
        return data

    monkeypatch.setattr(wire.CreateStreamRequest, "encode", encode)
    async with LiftbridgeClient([compacting_server.broker]) as client:
        await client.create_stream(stream_name)
    (data,) = sent
    request = wire.CreateStreamRequest.decode(data)
    assert request.compactEnabled is None
    unset = [
        "retentionMaxBytes",
        "retentionMaxMessages",
        "retentionMaxAge",
        "cleanerInterval",
        "segmentMaxBytes",
        "segmentMaxAge",
        "compactMaxGoroutines",
        "autoPauseTime",
        "autoPauseDisableIfSubscribers",
        "minIsr",
        "optimisticConcurrencyControl",
        "encryption",
    ]
    assert {name: getattr(request, name) for name in unset} == dict.fromkeys(unset)
