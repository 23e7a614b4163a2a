"""A grpcio server speaking raw bytes, the real gRPC peer of the lbwire.grpc tests.

Methods of ``/lbwire.test.Peer/``:

* ``Echo`` (unary): returns the request; request metadata whose key starts with
  ``echo-`` comes back as initial metadata and, renamed ``trailer-...``, as
  trailing metadata.
* ``Fail`` (unary): request ``b"<code>:<message>"``; aborts with that status.
  Sent as Trailers-Only unless metadata ``headers-first: yes`` is given.
* ``Sized`` (unary): request is a decimal size; returns that many bytes.
* ``Stream`` (server streaming): request ``b"<count>:<size>"``; sends count
  messages of size bytes, message i filled with byte ``i % 256``.
* ``StreamThenFail`` (server streaming): sends two messages, then aborts with
  ABORTED "stream failed".
* ``Forever`` (server streaming): sends ``b"tick"`` messages until the call is
  cancelled, then records the request in ``cancelled``.
* ``Bidi`` (bidirectional): echoes every request message; ends OK when the
  client half-closes. Metadata is echoed as for ``Echo``.
* ``Hang`` (unary): never answers; returns once the call is cancelled.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

# Skips the importing test module where grpcio cannot be installed (PyPy).
grpc = pytest.importorskip("grpc", reason="grpcio is not installed (it has no PyPy wheels)")

SERVICE = "lbwire.test.Peer"


def path(method: str) -> str:
    return f"/{SERVICE}/{method}"


class PeerServer:
    """A running grpcio server on 127.0.0.1 (port chosen by the OS)."""

    def __init__(
        self,
        *,
        port: int = 0,
        max_workers: int = 32,
        tls: Optional[Tuple[bytes, bytes]] = None,
    ) -> None:
        self.cancelled: List[str] = []
        self._lock = threading.Lock()
        self._events: Dict[Tuple[str, str], threading.Event] = {}
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=max_workers),
            options=[
                ("grpc.max_send_message_length", -1),
                ("grpc.max_receive_message_length", -1),
                ("grpc.so_reuseport", 0),
            ],
        )
        handlers = {
            "Echo": grpc.unary_unary_rpc_method_handler(self._echo),
            "Fail": grpc.unary_unary_rpc_method_handler(self._fail),
            "Sized": grpc.unary_unary_rpc_method_handler(self._sized),
            "Stream": grpc.unary_stream_rpc_method_handler(self._stream),
            "StreamThenFail": grpc.unary_stream_rpc_method_handler(self._stream_then_fail),
            "Forever": grpc.unary_stream_rpc_method_handler(self._forever),
            "Bidi": grpc.stream_stream_rpc_method_handler(self._bidi),
            "Hang": grpc.unary_unary_rpc_method_handler(self._hang),
        }
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, handlers),)
        )
        if tls is None:
            self.port = self._server.add_insecure_port(f"127.0.0.1:{port}")
        else:  # (private key PEM, certificate chain PEM)
            credentials = grpc.ssl_server_credentials([tls])
            self.port = self._server.add_secure_port(f"127.0.0.1:{port}", credentials)
        self._server.start()

    def stop(self, grace: float | None = None) -> None:
        self._server.stop(grace).wait()

    def event(self, what: str, request: str) -> threading.Event:
        """The event set when the request ``started`` or was ``cancelled``."""
        with self._lock:
            return self._events.setdefault((what, request), threading.Event())

    # -- handlers ------------------------------------------------------------

    def _echo(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._echo_metadata(context)
        return request

    @staticmethod
    def _echo_metadata(context: grpc.ServicerContext) -> None:
        echoed = [(k, v) for k, v in context.invocation_metadata() if k.startswith("echo-")]
        if echoed:
            context.send_initial_metadata(echoed)
            context.set_trailing_metadata([("trailer-" + k[len("echo-") :], v) for k, v in echoed])

    def _record_cancel(self, request: bytes) -> None:
        with self._lock:
            self.cancelled.append(request.decode())
        self.event("cancelled", request.decode()).set()

    def _forever(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        context.add_callback(lambda: self._record_cancel(request))
        while context.is_active():
            yield b"tick"

    def _fail(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        code_text, _, message = request.decode("utf-8").partition(":")
        code = next(c for c in grpc.StatusCode if c.value[0] == int(code_text))
        if dict(context.invocation_metadata()).get("headers-first") == "yes":
            context.send_initial_metadata([("x-early", "1")])
        context.set_trailing_metadata([("x-detail-bin", b"\x00\xffdetail")])
        context.abort(code, message)
        raise AssertionError("unreachable")

    def _sized(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        return b"z" * int(request)

    def _stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        count, _, size = request.partition(b":")
        for i in range(int(count)):
            yield bytes([i % 256]) * int(size)

    def _stream_then_fail(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield b"one"
        yield b"two"
        context.abort(grpc.StatusCode.ABORTED, "stream failed")

    def _bidi(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        self._echo_metadata(context)
        yield from requests

    def _hang(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        done = threading.Event()
        context.add_callback(done.set)
        self.event("started", request.decode()).set()
        done.wait(60)
        self._record_cancel(request)
        return b""
