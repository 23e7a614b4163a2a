"""Which proxy a connection goes through: proxy URLs, the environment, no_proxy.

The expectations marked "grpcio" are what grpcio 1.85 does with the same
environment (observed with a listener that records CONNECT requests), so that
`enable_http_proxy=True` means what it means with gufo-liftbridge; lbwire's
two additions (`*`, bracketed IPv6 entries) are marked as such.
"""

from __future__ import annotations

from typing import Dict
from urllib.parse import quote

import pytest

from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorInvalidArgument
from lbwire.grpc import ChannelConfig
from lbwire.grpc.proxy import (
    HttpProxy,
    no_proxy_matches,
    proxy_from_environment,
    select_proxy,
)

SECRET = "s3cr#t/pa:ss"
#: SECRET as a URL's userinfo wants it.
QUOTED = quote(SECRET, safe="")


@pytest.mark.parametrize(
    ("host", "no_proxy", "matches"),
    [
        # Names: the host itself and its subdomains, with or without a leading dot (grpcio).
        ("example.com", "example.com", True),
        ("bar.example.com", "example.com", True),
        ("example.com", ".example.com", True),
        ("a.b.example.com", ".example.com", True),
        ("notexample.com", "example.com", False),
        ("localhost", "host", False),
        ("localhost", "LOCALHOST", True),
        ("LocalHost", "localhost", True),
        ("example.com", " foo , example.com ", True),
        ("example.com", ",,", False),
        ("example.com", "", False),
        ("example.com.", "example.com", False),
        # Ports in entries are not supported: the entry matches no host (grpcio).
        ("localhost", "localhost:9292", False),
        # Addresses: as text (grpcio), and CIDR blocks.
        ("127.0.0.5", "127.0.0.5", True),
        ("127.0.0.5", "27.0.0.5", False),
        ("127.0.0.5", "127.0.0.0/8", True),
        ("127.0.0.5", "10.0.0.0/8", False),
        ("10.1.2.3", "10.1.0.0/16, 192.168.0.0/16", True),
        ("::1", "::1", True),
        ("::1", "::/0", True),
        ("::1", "0.0.0.0/0", False),
        ("127.0.0.1", "::/0", False),
        ("2001:db8::5", "2001:db8::/32", True),
        # A name is not resolved for a CIDR block (grpcio).
        ("localhost", "127.0.0.0/8", False),
        ("127.0.0.1", "127.0.0.0/33", False),
        ("127.0.0.1", "nonsense/8", False),
        # lbwire's additions: `*` is every host, brackets around IPv6 are allowed.
        ("example.com", "*", True),
        ("::1", "[::1]", True),
        ("[::1]", "::1", True),
    ],
)
def test_no_proxy_matching(host: str, no_proxy: str, matches: bool) -> None:
    assert no_proxy_matches(host, no_proxy) is matches
    assert HttpProxy("proxy", 3128, no_proxy=no_proxy).used_for(host) is not matches


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"http_proxy": "http://h:1"}, "http://h:1"),
        ({"https_proxy": "http://s:2", "http_proxy": "http://h:1"}, "http://s:2"),
        ({"grpc_proxy": "http://g:3", "https_proxy": "http://s:2"}, "http://g:3"),
        # Set and empty: no proxy, whatever the variables after it say (grpcio).
        ({"grpc_proxy": "", "http_proxy": "http://h:1"}, None),
        ({"grpc_proxy": "  ", "http_proxy": "http://h:1"}, None),
        # Only lowercase names count (grpcio).
        ({"HTTP_PROXY": "http://h:1", "HTTPS_PROXY": "http://s:2"}, None),
        # Without a port: 443, grpcio's default.
        ({"http_proxy": "http://h"}, "http://h:443"),
        # Scheme case, a path, a query are of no consequence (grpcio).
        ({"http_proxy": "HTTP://h:1/path?q=1"}, "http://h:1"),
        ({"http_proxy": "http://[::1]:3128"}, "http://[::1]:3128"),
    ],
)
def test_proxy_from_environment(environ: Dict[str, str], expected: str) -> None:
    proxy = proxy_from_environment(environ)
    assert (None if proxy is None else str(proxy)) == expected


@pytest.mark.parametrize(
    ("environ", "no_proxy"),
    [
        ({}, ""),
        ({"no_proxy": "a,b"}, "a,b"),
        ({"no_grpc_proxy": "g", "no_proxy": "a"}, "g"),
        # Set and empty, it still wins (grpcio).
        ({"no_grpc_proxy": "", "no_proxy": "a"}, ""),
        ({"NO_PROXY": "a"}, ""),
    ],
)
def test_no_proxy_variables(environ: Dict[str, str], no_proxy: str) -> None:
    proxy = proxy_from_environment({"http_proxy": "http://h:1", **environ})
    assert proxy is not None
    assert proxy.no_proxy == no_proxy


def test_credentials_are_decoded_sent_as_basic_and_never_shown() -> None:
    # The password holds '#', '/' and ':' escaped as URLs want them.
    proxy = HttpProxy.from_url("http://us%40er:s3cr%23t%2Fpa%3Ass@proxy.test:3128")
    assert (proxy.host, proxy.port) == ("proxy.test", 3128)
    assert (proxy.username, proxy.password) == ("us@er", SECRET)
    # RFC 7617: base64 of "user:password".
    assert proxy.authorization() == "Basic dXNAZXI6czNjciN0L3BhOnNz"
    for text in (str(proxy), repr(proxy), repr(ChannelConfig(proxy=proxy))):
        assert "s3cr" not in text
        assert "us@er" not in text
    assert str(proxy) == "http://proxy.test:3128"
    assert HttpProxy("p", 1).authorization() is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://user:s3cr@proxy:3128", "'https' scheme is not supported"),
        ("socks5://user:s3cr@proxy:1080", "'socks5' scheme is not supported"),
        ("user:s3cr@proxy:3128", "must be an http:// URL"),
        ("proxy:3128", "must be an http:// URL"),
        ("http://user:s3cr@proxy:99999", "invalid port"),
        ("http://user:s3cr@proxy:port", "invalid port"),
        ("http://user:s3cr@:3128", "names no host"),
        ("http://user:s3cr/x@proxy:3128", ""),
    ],
)
def test_unusable_urls_raise_without_the_credentials(url: str, why: str) -> None:
    if not why:  # an unescaped '/' in the password: the URL's host is "user"
        with pytest.raises(ValueError, match="invalid port") as caught:
            HttpProxy.from_url(url)
    else:
        with pytest.raises(ValueError, match=why) as caught:
            HttpProxy.from_url(url)
    assert "s3cr" not in str(caught.value)


def test_invalid_proxies_are_refused() -> None:
    with pytest.raises(ValueError, match="port"):
        HttpProxy("proxy", 0)
    with pytest.raises(ValueError, match="host"):
        HttpProxy("", 3128)
    with pytest.raises(ValueError, match="':'"):
        HttpProxy("proxy", 3128, username="a:b")
    with pytest.raises(ValueError, match="control"):
        HttpProxy("proxy", 3128, username="a", password="b\r\nX-Injected: 1")
    with pytest.raises(TypeError, match="HttpProxy"):
        ChannelConfig(proxy="http://proxy:3128")  # type: ignore[arg-type]


def test_an_explicit_proxy_wins_over_the_environment() -> None:
    environ = {"grpc_proxy": "http://env:1", "no_proxy": "*"}
    explicit = select_proxy("http://explicit:2", False, environ)
    assert str(explicit) == "http://explicit:2"
    assert explicit is not None
    assert explicit.used_for("anywhere")
    assert str(select_proxy("http://explicit:2", True, environ)) == "http://explicit:2"
    assert str(select_proxy(None, True, environ)) == "http://env:1"
    assert select_proxy(None, False, environ) is None


def test_client_options(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("grpc_proxy", "https_proxy", "http_proxy", "no_grpc_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("https_proxy", f"http://user:{QUOTED}@env.test:3128")
    monkeypatch.setenv("no_proxy", "localhost")
    # Off by default, as in gufo-liftbridge.
    assert LiftbridgeClient(["b:9292"]).channel_config.proxy is None
    on = LiftbridgeClient(["b:9292"], enable_http_proxy=True).channel_config.proxy
    assert on is not None
    assert (on.host, on.password, on.no_proxy) == ("env.test", SECRET, "localhost")
    explicit = LiftbridgeClient(["b:9292"], proxy="http://p:1").channel_config.proxy
    assert explicit == HttpProxy("p", 1)
    # A proxy lbwire cannot use is an error, not a silent direct connection.
    monkeypatch.setenv("https_proxy", f"https://user:{QUOTED}@env.test:3128")
    with pytest.raises(ErrorInvalidArgument, match="https_proxy environment variable") as caught:
        LiftbridgeClient(["b:9292"], enable_http_proxy=True)
    assert "s3cr" not in str(caught.value)
    assert LiftbridgeClient(["b:9292"]).channel_config.proxy is None
    with pytest.raises(ErrorInvalidArgument, match="proxy="):
        LiftbridgeClient(["b:9292"], proxy="proxy:3128")
