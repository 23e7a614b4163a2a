"""An HTTP/1.1 CONNECT tunnel through a proxy (RFC 9110 9.3.6), over which a connection runs.

:func:`open_tunnel` connects to the proxy, asks for a tunnel to the broker
and reads the proxy's reply head: at most :data:`MAX_REPLY_HEAD` bytes,
within the caller's time bound (the channel's ``connect_timeout``). A 2xx
reply opens the tunnel; bytes the broker sent right behind the reply are
handed out first by the returned stream. Anything else fails the attempt
with a :class:`~lbwire.grpc.status.GRPCError` whose status says whether
trying again can help:

* 407, and 401 (tinyproxy's answer to wrong credentials): UNAUTHENTICATED;
  403 (the proxy does not allow the host or port): PERMISSION_DENIED. A
  proxy's configuration does not change between attempts: lbwire raises
  these as ``ErrorPermissionDenied``, which is not retried.
* Any other status (502, 503, 504: the proxy could not reach the broker),
  a connection closed or reset before the reply, a reply that is not
  HTTP/1.x or too long: UNAVAILABLE, retried as a broker that is down.

Messages name the proxy by ``http://host:port`` only, never the credentials.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

import anyio
import anyio.abc

from .._failures import CONNECTION_ERRORS
from ..proxy import HttpProxy
from ..status import GRPCError, Status

__all__ = ["MAX_REPLY_HEAD", "open_tunnel"]

#: The longest reply head (status line and header fields) read from a proxy.
MAX_REPLY_HEAD = 16 * 1024

_READ_SIZE = 4096
# The end of the reply head; a lone LF ends lines too (RFC 9112 2.2).
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: ([^\r\n]*))?")

_REFUSALS = {
    401: Status.UNAUTHENTICATED,
    403: Status.PERMISSION_DENIED,
    407: Status.UNAUTHENTICATED,
}


async def open_tunnel(proxy: HttpProxy, host: str, port: int) -> anyio.abc.ByteStream:
    """Connect to ``proxy`` and open a tunnel to ``host:port`` through it.

    Returns:
        The stream to the broker; the caller closes it.

    Raises:
        GRPCError: the proxy could not be reached, or did not open the tunnel
            (the status as the module says).

    """
    try:
        stream = await anyio.connect_tcp(proxy.host, proxy.port)
    except CONNECTION_ERRORS as exc:
        raise GRPCError(
            Status.UNAVAILABLE, f"cannot connect to the proxy: {str(exc) or repr(exc)}"
        ) from exc
    try:
        received = await _handshake(stream, proxy, host, port)
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise
    return _Prefixed(stream, received) if received else stream


async def _handshake(stream: anyio.abc.ByteStream, proxy: HttpProxy, host: str, port: int) -> bytes:
    """Send the CONNECT request and read the reply head; return what followed it."""
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    authorization = proxy.authorization()
    if authorization is not None:
        lines.append(f"Proxy-Authorization: {authorization}")
    request = "\r\n".join(lines).encode("ascii", "replace") + b"\r\n\r\n"
    buffer = bytearray()
    try:
        await stream.send(request)
        while True:
            end = _HEAD_END.search(buffer)
            if end is not None:
                break
            if len(buffer) > MAX_REPLY_HEAD:
                raise _unavailable(
                    f"the proxy's reply to CONNECT {target} is longer than "
                    f"{MAX_REPLY_HEAD} bytes without ending its head"
                )
            buffer += await stream.receive(_READ_SIZE)
    except anyio.EndOfStream:
        raise _unavailable(
            f"the proxy closed the connection before it answered CONNECT {target}"
            if not buffer
            else f"the proxy closed the connection in its reply to CONNECT {target}: "
            f"{_first_line(buffer)!r}"
        ) from None
    except CONNECTION_ERRORS as exc:
        raise _unavailable(
            f"the connection to the proxy failed during CONNECT {target}: {str(exc) or repr(exc)}"
        ) from exc
    head = bytes(buffer[: end.start()])
    status_line = head.split(b"\n", 1)[0].rstrip(b"\r")
    match = _STATUS_LINE.fullmatch(status_line)
    if match is None:
        raise _unavailable(
            f"the proxy's reply to CONNECT {target} is not HTTP/1.x: {_first_line(buffer)!r}"
        )
    code = int(match.group(1))
    if 200 <= code < 300:
        return bytes(buffer[end.end() :])
    text = _printable(status_line.decode("latin-1"))
    raise GRPCError(
        _REFUSALS.get(code, Status.UNAVAILABLE),
        f"the proxy refused CONNECT {target}: {text}{_hint(code, authorization is not None)}",
    )


def _hint(code: int, sent_credentials: bool) -> str:
    if code in (401, 407):
        if sent_credentials:
            return " (it did not accept the credentials in the proxy URL)"
        return " (it wants credentials: give them in the URL, http://user:password@host:port)"
    if code == 403:
        return " (the proxy's configuration does not allow this host or port)"
    return ""


def _unavailable(message: str) -> GRPCError:
    return GRPCError(Status.UNAVAILABLE, message)


def _first_line(data: bytearray) -> str:
    return _printable(bytes(data[:200]).split(b"\n", 1)[0].rstrip(b"\r").decode("latin-1"))


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text[:200])


class _Prefixed(anyio.abc.ByteStream):
    """A stream that hands out ``prefix`` before what it receives from ``stream``."""

    def __init__(self, stream: anyio.abc.ByteStream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix

    async def receive(self, max_bytes: int = 65536) -> bytes:
        prefix = self._prefix
        if prefix:
            self._prefix = prefix[max_bytes:]
            return prefix[:max_bytes]
        return await self._stream.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        await self._stream.send(item)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._stream.extra_attributes
