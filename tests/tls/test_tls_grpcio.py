"""TLS and mutual TLS of lbwire's gRPC channel against grpcio's server.

grpcio (BoringSSL) is an independent TLS and HTTP/2 implementation: it insists
on ALPN h2, checks client certificates after a TLS 1.3 handshake and, unlike
Go, closes the connection without an alert when it refuses one.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

import pytest
from tls_support import CLIENT_NAME, PKI, ipv6_loopback_missing

from lbwire.grpc import Channel, ChannelConfig, GRPCError, Status

try:
    import grpc
except ImportError:  # pragma: no cover - depends on the interpreter
    grpc = None
if grpc is None:
    pytest.skip(
        "grpcio is not installed (it has no wheels for PyPy); the TLS tests against "
        "Liftbridge still run",
        allow_module_level=True,
    )

pytestmark = [pytest.mark.anyio, pytest.mark.peer]

SERVICE = "lbwire.tls.Peer"
ECHO = f"/{SERVICE}/Echo"
WHO_AM_I = f"/{SERVICE}/WhoAmI"


class TLSPeer:
    """A grpcio server on loopback: ``Echo`` returns the request, ``WhoAmI`` the
    common name of the client certificate it verified (empty without one)."""

    def __init__(
        self,
        pki: PKI,
        *,
        tls: bool = True,
        require_client_cert: bool = False,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=4), options=[("grpc.so_reuseport", 0)]
        )
        handlers = {
            "Echo": grpc.unary_unary_rpc_method_handler(lambda request, context: request),
            "WhoAmI": grpc.unary_unary_rpc_method_handler(self._who_am_i),
        }
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, handlers),)
        )
        address = f"[{host}]:0" if ":" in host else f"{host}:0"
        if tls:
            credentials = grpc.ssl_server_credentials(
                [(pki.server.private_key_pem.bytes(), pki.server.cert_chain_pems[0].bytes())],
                root_certificates=pki.client_ca.cert_pem.bytes() if require_client_cert else None,
                require_client_auth=require_client_cert,
            )
            self.port = self._server.add_secure_port(address, credentials)
        else:
            self.port = self._server.add_insecure_port(address)
        self._server.start()

    @staticmethod
    def _who_am_i(request: bytes, context: Any) -> bytes:
        names = context.auth_context().get("x509_common_name", [b""])
        return bytes(names[0])

    def channel(
        self, context: Optional[ssl.SSLContext], server_hostname: Optional[str] = None
    ) -> Any:
        config = ChannelConfig(ssl_context=context, server_hostname=server_hostname)
        return Channel.open(self.host, self.port, config=config)

    def stop(self) -> None:
        self._server.stop(None).wait()


@pytest.fixture(scope="module")
def tls_peer(pki: PKI) -> Iterator[TLSPeer]:
    """Server authentication only."""
    peer = TLSPeer(pki)
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def mtls_peer(pki: PKI) -> Iterator[TLSPeer]:
    """Requires a client certificate signed by the client CA."""
    peer = TLSPeer(pki, require_client_cert=True)
    yield peer
    peer.stop()


async def call_error(
    peer: TLSPeer,
    context: Optional[ssl.SSLContext],
    status: Status = Status.UNAVAILABLE,
    **kwargs: Any,
) -> GRPCError:
    """The error a call raises; a refused certificate is UNAUTHENTICATED (not retried)."""
    async with peer.channel(context, **kwargs) as channel:
        with pytest.raises(GRPCError) as caught:
            await channel.unary_unary(ECHO, b"secret")
    assert caught.value.status is status
    return caught.value


# -- server authentication ------------------------------------------------------------


async def test_tls_call_verifies_the_server_against_a_custom_ca(
    pki: PKI, tls_peer: TLSPeer
) -> None:
    async with tls_peer.channel(pki.context()) as channel:
        assert await channel.unary_unary(ECHO, b"secret") == b"secret"


async def test_alpn_h2_is_negotiated_even_if_the_context_offered_another_protocol(
    pki: PKI, tls_peer: TLSPeer
) -> None:
    # grpcio closes TLS connections that did not choose h2 by ALPN: the call
    # succeeding proves the channel offered h2 (and only h2).
    context = pki.context()
    context.set_alpn_protocols(["http/1.1"])
    async with tls_peer.channel(context) as channel:
        assert await channel.unary_unary(ECHO, b"x") == b"x"


async def test_untrusted_server_certificate_is_refused_naming_the_cause(
    pki: PKI, tls_peer: TLSPeer
) -> None:
    other_ca = type(pki.server_ca)()
    error = await call_error(tls_peer, pki.context(trust=other_ca), Status.UNAUTHENTICATED)
    assert "certificate verify failed" in error.message
    assert "not signed by a CA the ssl_context trusts" in error.message
    assert f"127.0.0.1:{tls_peer.port}" in error.message


async def test_wrong_server_host_name_is_refused_naming_the_name(
    pki: PKI, tls_peer: TLSPeer
) -> None:
    error = await call_error(
        tls_peer, pki.context(), Status.UNAUTHENTICATED, server_hostname="elsewhere.test"
    )
    assert "certificate verify failed: hostname mismatch" in error.message
    assert "'elsewhere.test'" in error.message


async def test_server_host_name_override_is_verified(pki: PKI, tls_peer: TLSPeer) -> None:
    async with tls_peer.channel(pki.context(), server_hostname="liftbridge.test") as channel:
        assert await channel.unary_unary(ECHO, b"named") == b"named"


async def test_plaintext_channel_to_a_tls_server_suggests_tls(tls_peer: TLSPeer) -> None:
    error = await call_error(tls_peer, None)
    assert "a TLS server? then give an ssl_context" in error.message


async def test_tls_channel_to_a_plaintext_server_says_it_does_not_speak_tls(pki: PKI) -> None:
    peer = TLSPeer(pki, tls=False)
    try:
        error = await call_error(peer, pki.context())
    finally:
        peer.stop()
    assert "the server does not speak TLS" in error.message


# -- mutual TLS ---------------------------------------------------------------------------


async def test_client_certificate_identifies_the_client(pki: PKI, mtls_peer: TLSPeer) -> None:
    async with mtls_peer.channel(pki.context(cert=pki.client)) as channel:
        assert await channel.unary_unary(WHO_AM_I, b"") == CLIENT_NAME.encode()
        # Later calls reuse the authenticated connection.
        assert await channel.unary_unary(ECHO, b"again") == b"again"


async def test_missing_client_certificate_names_the_likely_cause(
    pki: PKI, mtls_peer: TLSPeer
) -> None:
    # grpcio closes without a TLS alert: the channel can only say what is likely.
    error = await call_error(mtls_peer, pki.context())
    assert "may require a client certificate" in error.message


async def test_client_certificate_from_an_unknown_ca_names_the_likely_cause(
    pki: PKI, mtls_peer: TLSPeer
) -> None:
    stranger = type(pki.client_ca)().issue_cert("stranger.test", common_name="stranger")
    error = await call_error(mtls_peer, pki.context(cert=stranger))
    assert "may require a client certificate" in error.message


# -- IPv6 ------------------------------------------------------------------------------------


@pytest.fixture
def ipv6_mtls_peer(pki: PKI) -> Iterator[TLSPeer]:
    reason = ipv6_loopback_missing()
    if reason is not None:
        pytest.skip(f"no IPv6 loopback on this machine: {reason}")
    peer = TLSPeer(pki, require_client_cert=True, host="::1")
    yield peer
    peer.stop()


async def test_mutual_tls_over_ipv6_loopback_verifies_the_address(
    pki: PKI, ipv6_mtls_peer: TLSPeer
) -> None:
    # The certificate names ::1 as an IP address: the channel checks it
    # against the address it connected to.
    async with ipv6_mtls_peer.channel(pki.context(cert=pki.client)) as channel:
        assert await channel.unary_unary(WHO_AM_I, b"") == CLIENT_NAME.encode()
