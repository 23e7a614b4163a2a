"""TLS to a real Liftbridge server through a real HTTP proxy (tinyproxy on loopback).

The proxy only opens the tunnel (CONNECT); TLS runs end to end from the
client to the broker inside it, and the certificate is checked against the
broker's name (or ``tls_server_hostname``), not the proxy's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from helpers.tinyproxy import Tinyproxy, tinyproxy
from tls_support import PKI

from lbwire.client import LiftbridgeClient, StartPosition, StopPosition
from lbwire.error import ErrorPermissionDenied
from lbwire.testing import LiftbridgeServer, TLSFiles

pytestmark = [pytest.mark.anyio, pytest.mark.server]

#: A guard against hangs, never a speed expectation.
HANG_GUARD = 30.0
PASSWORD = "tls-pr0xy-s3cret"


@pytest.fixture(scope="module")
def tls_server(pki: PKI) -> Iterator[LiftbridgeServer]:
    """TLS with server authentication only."""
    with LiftbridgeServer(tls=TLSFiles(pki.server_cert_file, pki.server_key_file)) as server:
        yield server


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Tinyproxy]:
    """A proxy that wants credentials and opens tunnels to any port."""
    with tinyproxy(tmp_path, credentials=("lbwire", PASSWORD)) as proxy:
        yield proxy


@pytest.mark.parametrize("server_hostname", [None, "liftbridge.test"])
async def test_tls_publish_and_subscribe_through_the_tunnel(
    pki: PKI,
    tls_server: LiftbridgeServer,
    proxy: Tinyproxy,
    stream_name: str,
    server_hostname: str | None,
) -> None:
    async with LiftbridgeClient(
        [tls_server.broker],
        ssl_context=pki.context(),
        tls_server_hostname=server_hostname,
        proxy=proxy.url,
    ) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
        await client.publish(b"sealed", stream=stream_name)
        with anyio.fail_after(HANG_GUARD):
            values = [
                m.value
                async for m in client.subscribe(
                    stream_name,
                    start_position=StartPosition.EARLIEST,
                    stop_position=StopPosition.STOP_LATEST,
                )
            ]
        assert values == [b"sealed"]
    assert set(proxy.connect_requests()) == {tls_server.broker}


async def test_the_certificate_is_checked_against_the_broker_name_through_the_tunnel(
    pki: PKI, tls_server: LiftbridgeServer, proxy: Tinyproxy
) -> None:
    client = LiftbridgeClient(
        [tls_server.broker],
        ssl_context=pki.context(),
        tls_server_hostname="elsewhere.test",
        proxy=proxy.url,
    )
    async with client:
        with pytest.raises(ErrorPermissionDenied) as caught:
            await client.get_metadata()
    message = str(caught.value)
    assert f"through the HTTP proxy http://127.0.0.1:{proxy.port}" in message
    assert "hostname mismatch" in message
    assert PASSWORD not in message
    # The tunnel was opened; the refusal came from TLS inside it, not retried.
    assert proxy.connect_requests() == [tls_server.broker]
