"""Parsing of broker addresses (`host:port`, `[v6]:port`)."""

from __future__ import annotations

from typing import Tuple

Address = Tuple[str, int]


def parse_broker(text: str) -> Address:
    """Split a broker address into host and port.

    Accepts `host:port`, `1.2.3.4:port` and `[::1]:port`.

    Raises:
        ValueError: The address is not of one of these forms, or the port is
            not a number from 1 to 65535.
    """
    if not isinstance(text, str):
        raise ValueError(f"Invalid broker address {text!r}: expected a 'host:port' string")
    host: str
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            raise ValueError(f"Invalid broker address {text!r}: expected '[v6-address]:port'")
        host, port_text = text[1:close], text[close + 2 :]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(
                f"Invalid broker address {text!r}: expected 'host:port' "
                "(write IPv6 addresses as '[addr]:port')"
            )
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"Invalid broker address {text!r}: empty or malformed host")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"Invalid broker address {text!r}: port must be 1-65535")
    return host, int(port_text)


def format_address(address: Address) -> str:
    """Render an address as `host:port` (IPv6 hosts in brackets)."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
