"""The transports a connection runs over, one per backend, and the running loop's means.

:func:`connect` opens the transport that fits the running event loop and the
connection's security; :func:`running_backend` gives the loop's clock and the
parking of calls. The connection itself never asks which one it has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

from ..status import GRPCError, Status
from .base import Backend, Parking, Transport, TransportSink
from .stream import StreamTransport

if TYPE_CHECKING:
    import ssl

    from ..proxy import HttpProxy

__all__ = [
    "Backend",
    "Parking",
    "StreamTransport",
    "Transport",
    "TransportSink",
    "connect",
    "running_backend",
]


def _library() -> str:
    try:
        import sniffio
    except ImportError:  # anyio without sniffio only runs on asyncio
        return "asyncio"
    return str(sniffio.current_async_library())


def running_backend() -> Backend:
    """The clock and parking of the running event loop (call from inside it)."""
    library = _library()
    if library == "asyncio":
        from .asyncio_backend import AsyncioBackend

        return AsyncioBackend()
    if library == "trio":
        from .trio_backend import TrioBackend

        return TrioBackend()
    return Backend()


async def connect(
    host: str,
    port: int,
    *,
    ssl_context: Optional[ssl.SSLContext] = None,
    server_hostname: Optional[str] = None,
    proxy: Optional[HttpProxy] = None,
) -> Transport:
    """Open a TCP (and TLS, with ALPN h2) connection with the fastest transport available.

    Plaintext on asyncio: an :class:`asyncio.Protocol`; plaintext on trio: an
    anyio stream written to through its socket while that takes the bytes;
    TLS, and other backends: an anyio stream. Through ``proxy``: a CONNECT
    tunnel (:mod:`.tunnel`), then an anyio stream, TLS end to end in it.

    Raises:
        OSError, ssl.SSLError, anyio.EndOfStream, ...: the connection failed.
        GRPCError: the TLS server did not agree to HTTP/2 (ALPN), or the
            proxy could not be reached or refused the tunnel.

    """
    library = _library()
    if proxy is not None:
        from .tunnel import open_tunnel

        stream = await open_tunnel(proxy, host, port)
        if ssl_context is None:
            raw = stream.extra(SocketAttribute.raw_socket, None) if library == "trio" else None
            return StreamTransport(stream, raw_socket=raw)
        return await _start_tls(stream, ssl_context, server_hostname or host)
    if ssl_context is None:
        if library == "asyncio":
            from .asyncio_backend import connect_asyncio

            return await connect_asyncio(host, port)
        if library == "trio":
            from .trio_backend import connect_trio

            stream = await connect_trio(host, port)
            return StreamTransport(stream, raw_socket=stream.extra(SocketAttribute.raw_socket))
        return StreamTransport(await anyio.connect_tcp(host, port))
    ssl_context.set_alpn_protocols(["h2"])
    tls_stream = await anyio.connect_tcp(
        host,
        port,
        ssl_context=ssl_context,
        tls_hostname=server_hostname or host,
        tls_standard_compatible=False,
    )
    return await _checked_h2(tls_stream)


async def _start_tls(
    stream: anyio.abc.ByteStream, ssl_context: ssl.SSLContext, hostname: str
) -> Transport:
    """TLS over an open stream (a proxy's tunnel), as ``anyio.connect_tcp`` does it."""
    from anyio.streams.tls import TLSStream

    ssl_context.set_alpn_protocols(["h2"])
    try:
        tls_stream = await TLSStream.wrap(
            stream, hostname=hostname, ssl_context=ssl_context, standard_compatible=False
        )
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise
    return await _checked_h2(tls_stream)


async def _checked_h2(tls_stream: anyio.abc.ByteStream) -> Transport:
    """The transport over ``tls_stream``, if the server agreed to HTTP/2 (ALPN)."""
    from anyio.streams.tls import TLSAttribute

    alpn = tls_stream.extra(TLSAttribute.alpn_protocol, None)
    if alpn not in (None, "h2"):
        await anyio.aclose_forcefully(tls_stream)
        raise GRPCError(Status.UNAVAILABLE, f"the server negotiated ALPN {alpn!r}, not h2")
    return StreamTransport(tls_stream, tls=True)
