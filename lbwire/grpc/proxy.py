"""HTTP CONNECT proxies: which proxy a connection goes through, decided as grpcio decides.

A connection through a proxy opens TCP to the proxy, asks it for a tunnel
to the broker (``CONNECT host:port``, :mod:`lbwire.grpc._backends.tunnel`),
and then speaks HTTP/2, and TLS when configured, end to end through the
tunnel: the proxy sees the broker's name and port, never the calls. The
proxy is always spoken to in plain HTTP, whether the broker connection is
TLS or not, as grpcio does.

The environment, read as grpc core reads it (``enable_http_proxy=True``):

* the proxy is the first of ``grpc_proxy``, ``https_proxy``, ``http_proxy``
  that is set (lowercase names only); one set to an empty value means no
  proxy;
* hosts are exempted by the first of ``no_grpc_proxy``, ``no_proxy`` that
  is set: a comma-separated list of host names (an entry matches that host
  and its subdomains, with or without a leading dot), IP addresses and CIDR
  blocks (``10.0.0.0/8``, matched against brokers given as addresses; names
  are not resolved for it). Case is ignored; ports in entries are not
  supported. lbwire also takes ``*`` as every host (grpcio does not).

Credentials in the URL (``http://user:password@host:port``) are sent as
``Proxy-Authorization: Basic``; they never appear in ``str()`` or ``repr()``
of an :class:`HttpProxy`, in exception messages or in logs.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Mapping, Optional, Union

if TYPE_CHECKING:
    from ipaddress import IPv4Address, IPv6Address

    _Address = Union[IPv4Address, IPv6Address]

__all__ = [
    "DEFAULT_PROXY_PORT",
    "NO_PROXY_VARIABLES",
    "PROXY_VARIABLES",
    "HttpProxy",
    "no_proxy_matches",
    "proxy_from_environment",
    "select_proxy",
]

#: The variables that name the proxy, first set wins (grpc core's order).
PROXY_VARIABLES = ("grpc_proxy", "https_proxy", "http_proxy")
#: The variables that list the hosts reached directly, first set wins.
NO_PROXY_VARIABLES = ("no_grpc_proxy", "no_proxy")
#: The port of a proxy URL without one: grpc core's choice, kept for drop-in use.
DEFAULT_PROXY_PORT = 443


@dataclasses.dataclass(frozen=True)
class HttpProxy:
    """An HTTP proxy that opens CONNECT tunnels; validated on creation.

    Attributes:
        host: the proxy's host name or IP address (IPv6 without brackets).
        port: the proxy's TCP port.
        username: for ``Proxy-Authorization: Basic``; empty for none.
        password: the password that goes with ``username``.
        no_proxy: hosts reached directly, not through the proxy (the syntax
            of the ``no_proxy`` variable, see :func:`no_proxy_matches`).

    ``str()`` gives ``http://host:port``; neither it nor ``repr()`` shows the
    credentials.
    """

    host: str
    port: int
    username: str = dataclasses.field(default="", repr=False)
    password: str = dataclasses.field(default="", repr=False)
    no_proxy: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host or _has_controls(self.host):
            raise ValueError("the proxy's host must be a non-empty name or address")
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise TypeError("the proxy's port must be an int")
        if not 0 < self.port < 65536:
            raise ValueError(f"the proxy's port must be in 1..65535, not {self.port}")
        if ":" in self.username:
            raise ValueError("a proxy user name cannot contain ':' (HTTP Basic authentication)")
        if _has_controls(self.username) or _has_controls(self.password):
            raise ValueError("proxy credentials cannot contain control characters")
        if not isinstance(self.no_proxy, str):
            raise TypeError("no_proxy must be a str")

    @classmethod
    def from_url(cls, url: str, *, no_proxy: str = "", source: str = "the proxy URL") -> HttpProxy:
        """Parse ``http://[user:password@]host[:port]`` (the port defaults to 443, as in grpc).

        Args:
            url: the proxy URL; percent-escapes in the credentials are decoded.
                A path, query or fragment is ignored.
            no_proxy: hosts reached directly (see :func:`no_proxy_matches`).
            source: where the URL came from, for error messages.

        Raises:
            ValueError: not an ``http://`` URL with a host (the message never
                repeats the credentials).

        """
        from urllib.parse import unquote, urlsplit

        if not isinstance(url, str):
            raise TypeError(f"{source} must be a str, not {type(url).__name__}")
        shown = _redact(url)
        scheme, separator, _ = url.partition("://")
        if not separator:
            raise ValueError(f"{source} must be an http:// URL, like http://proxy:3128: {shown!r}")
        if scheme.lower() != "http":
            raise ValueError(
                f"{source} {shown!r}: the {scheme!r} scheme is not supported: lbwire talks "
                "to a proxy in plain HTTP, as grpcio does (TLS to the brokers still runs "
                "end to end through the tunnel); give an http:// URL"
            )
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ValueError(f"{source} {shown!r} has an invalid port") from None
        if not parts.hostname:
            raise ValueError(f"{source} {shown!r} names no host")
        return cls(
            parts.hostname,
            DEFAULT_PROXY_PORT if port is None else port,
            username=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            no_proxy=no_proxy,
        )

    @property
    def address(self) -> str:
        """``host:port``, an IPv6 host in brackets."""
        return _join(self.host, self.port)

    def __str__(self) -> str:
        return f"http://{self.address}"

    def used_for(self, host: str) -> bool:
        """Whether a connection to ``host`` goes through this proxy (``no_proxy`` says not)."""
        return not no_proxy_matches(host, self.no_proxy)

    def authorization(self) -> Optional[str]:
        """The ``Proxy-Authorization`` header's value, or None without credentials."""
        if not self.username and not self.password:
            return None
        import base64

        token = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(token).decode("ascii")


def proxy_from_environment(environ: Optional[Mapping[str, str]] = None) -> Optional[HttpProxy]:
    """The proxy the environment names, with its ``no_proxy`` list; None for none.

    Args:
        environ: the variables to read (``os.environ`` by default).

    Raises:
        ValueError: the variable that names the proxy holds no usable
            ``http://`` URL (grpcio logs this and connects directly; lbwire,
            asked to use the environment's proxy, says so instead).

    """
    env = os.environ if environ is None else environ
    name = next((n for n in PROXY_VARIABLES if n in env), None)
    if name is None:
        return None
    url = env[name].strip()
    if not url:  # set and empty: no proxy (grpc core's rule)
        return None
    no_proxy = next((env[n] for n in NO_PROXY_VARIABLES if n in env), "")
    try:
        return HttpProxy.from_url(url, no_proxy=no_proxy, source=f"the {name} environment variable")
    except ValueError as exc:
        if name == "grpc_proxy":
            hint = "or set grpc_proxy empty for no proxy"
        else:
            hint = (
                f"or set grpc_proxy, which wins over {name}: to an http:// URL, or empty for none"
            )
        raise ValueError(f"{exc}; {hint}") from None


def select_proxy(
    proxy: Optional[str],
    enable_http_proxy: bool,
    environ: Optional[Mapping[str, str]] = None,
) -> Optional[HttpProxy]:
    """The client's proxy: ``proxy`` if given, else the environment's if enabled.

    An explicit ``proxy`` URL is used for every broker, whatever the
    environment says (its ``no_proxy`` included).

    Raises:
        ValueError: a proxy URL lbwire cannot use (see :meth:`HttpProxy.from_url`).

    """
    if proxy is not None:
        return HttpProxy.from_url(proxy, source="proxy=")
    if enable_http_proxy:
        return proxy_from_environment(environ)
    return None


def no_proxy_matches(host: str, no_proxy: str) -> bool:
    """Whether ``host`` is in the ``no_proxy`` list (so it is reached directly).

    The list is comma-separated; blanks around entries and empty entries are
    ignored, and so is case. An entry matches:

    * ``*``: every host;
    * ``example.com`` or ``.example.com``: ``example.com`` and every name
      ending in ``.example.com``;
    * ``10.1.2.3`` or ``::1``: that address (an IPv6 one with or without
      brackets);
    * ``10.0.0.0/8``: a host given as an address in that block.
    """
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    address: Optional[_Address] = None
    parsed = False
    for entry in no_proxy.split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            if not parsed:
                address, parsed = _ip_address(host), True
            if address is not None and _in_block(address, entry):
                return True
            continue
        if entry.startswith("[") and entry.endswith("]"):
            entry = entry[1:-1]
        domain = entry[1:] if entry.startswith(".") else entry
        if domain and (host == domain or host.endswith("." + domain)):
            return True
    return False


def _ip_address(host: str) -> Optional[_Address]:
    """``host`` as an address, or None if it is a name."""
    import ipaddress

    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _in_block(address: _Address, block: str) -> bool:
    import ipaddress

    try:
        network = ipaddress.ip_network(block, strict=False)
    except ValueError:
        return False  # not a CIDR block: an entry no host matches
    # (ipaddress compares the bits without looking at the versions.)
    return address.version == network.version and address in network


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _has_controls(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def _redact(url: str) -> str:
    """``url`` with anything before its last ``@`` (the credentials) replaced, for messages."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    if "@" in rest:
        # (Everything up to the last '@': a password may hold an unescaped '/'.)
        rest = "***@" + rest.rsplit("@", 1)[1]
    return f"{scheme}{separator}{rest}"
