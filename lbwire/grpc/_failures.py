"""Why a connection failed, in words a user can act on, and the status of the calls it ends."""

from __future__ import annotations

import ssl
from typing import Optional

import anyio

from .status import Status

__all__ = ["CONNECTION_ERRORS", "describe_failure", "failure_status"]

#: Errors that mean the connection is gone.
CONNECTION_ERRORS = (
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    OSError,
    ssl.SSLError,
)

# OpenSSL reasons meaning the peer answered the ClientHello with something
# other than TLS (a plaintext server).
_NOT_TLS = (
    "WRONG_VERSION_NUMBER",
    "RECORD_LAYER_FAILURE",
    "PACKET_LENGTH_TOO_LONG",
    "HTTP_REQUEST",
    "UNKNOWN_PROTOCOL",
)


def _describe_tls_error(exc: ssl.SSLError) -> str:
    """Name the cause of a TLS failure in words; OpenSSL's text alone is cryptic."""
    reason = str(exc.reason or "")
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = str(exc.verify_message or exc).rstrip(".")
        if "hostname mismatch" in detail.lower():
            # OpenSSL: "Hostname mismatch, certificate is not valid for 'x'."
            return (
                f"certificate verify failed: {detail[:1].lower()}{detail[1:]} (connect by "
                f"a name it was issued for, or give that name as the TLS server host name)"
            )
        return (
            f"certificate verify failed: {detail} (the server's certificate is not "
            f"signed by a CA the ssl_context trusts)"
        )
    alert = _tls_alert(exc)
    if alert is not None:
        # Alerts the server sent: after the handshake, those about the
        # certificate the client sent (or did not send).
        if alert == "certificate required":
            return (
                "the server requires a client certificate and none was sent "
                "(TLS alert: certificate required)"
            )
        if _is_certificate_alert(alert):
            return f"the server rejected the client certificate (TLS alert: {alert})"
        return f"the server refused the TLS connection (TLS alert: {alert})"
    if reason in _NOT_TLS:
        return (
            f"the server does not speak TLS (a plaintext server? then give no ssl_context): {exc}"
        )
    return f"TLS error: {exc}"


def _tls_alert(exc: ssl.SSLError) -> Optional[str]:
    """The TLS alert the peer sent ("unknown ca"...), if that is what failed."""
    reason = str(exc.reason or "")
    if "ALERT_" not in reason:
        return None
    return reason.split("ALERT_", 1)[1].replace("_", " ").lower()


def _is_certificate_alert(alert: str) -> bool:
    return "certificate" in alert or alert in ("unknown ca", "access denied")


def failure_status(exc: BaseException) -> Status:
    """The status of calls a connection failure ends.

    A refused certificate (verification failed, or the server's alert) is a
    configuration error: UNAUTHENTICATED, which callers do not retry, unlike
    UNAVAILABLE.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Status.UNAUTHENTICATED
    if isinstance(exc, ssl.SSLError):
        alert = _tls_alert(exc)
        if alert is not None and _is_certificate_alert(alert):
            return Status.UNAUTHENTICATED
    return Status.UNAVAILABLE


def describe_failure(exc: BaseException, *, tls: bool, answered: bool) -> str:
    """Say why a connection failed, naming the cause a user can act on."""
    if isinstance(exc, ssl.SSLError) and not isinstance(
        exc, (ssl.SSLZeroReturnError, ssl.SSLEOFError)
    ):
        return _describe_tls_error(exc)
    if not answered and isinstance(
        exc, (anyio.EndOfStream, ssl.SSLZeroReturnError, ssl.SSLEOFError)
    ):
        # Servers that check client certificates after the handshake (TLS
        # 1.3) without sending an alert, as grpcio's does, just close.
        if tls:
            return (
                "the server closed the TLS connection without answering: it may "
                "require a client certificate (none was sent, or one it does not trust)"
            )
        return (
            "the server closed the connection without answering (a TLS server? "
            "then give an ssl_context)"
        )
    return str(exc) or repr(exc)
