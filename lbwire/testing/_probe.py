"""A blocking gRPC unary call of its own, for the readiness checks of lbwire.testing.

The harness must not lean on the client it is there to test: a test may wrap
or break lbwire's transport (counting its calls, for one), and a server's
readiness must not show up in it. So this is a plain socket and ``h2``.
"""

from __future__ import annotations

import socket
import time

import h2.config
import h2.connection
import h2.events

from lbwire import wire


class ProbeError(Exception):
    """The probe call failed (refused, reset, a non-OK gRPC status, or no answer in time)."""


def unary_call(host: str, port: int, path: str, request: bytes, timeout: float) -> bytes:
    """Send one plaintext gRPC unary call and return the response message's bytes.

    Raises:
        ProbeError: No OK answer within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    connection = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            connection.initiate_connection()
            stream_id = connection.get_next_available_stream_id()
            connection.send_headers(
                stream_id,
                [
                    (b":method", b"POST"),
                    (b":scheme", b"http"),
                    (b":path", path.encode()),
                    (b":authority", f"{host}:{port}".encode()),
                    (b"content-type", b"application/grpc"),
                    (b"te", b"trailers"),
                ],
            )
            frame = b"\x00" + len(request).to_bytes(4, "big") + request
            connection.send_data(stream_id, frame, end_stream=True)
            sock.sendall(connection.data_to_send())
            body = bytearray()
            status = None
            while True:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                data = sock.recv(65536)
                if not data:
                    raise ProbeError("the server closed the connection")
                for event in connection.receive_data(data):
                    if isinstance(event, h2.events.DataReceived):
                        body += event.data
                        connection.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                    elif isinstance(
                        event, (h2.events.ResponseReceived, h2.events.TrailersReceived)
                    ):
                        for name, value in event.headers:
                            if name == b"grpc-status":
                                status = int(value)
                    elif isinstance(event, h2.events.StreamReset):
                        raise ProbeError(f"the server reset the call ({event.error_code!r})")
                    elif isinstance(event, h2.events.StreamEnded):
                        if status != 0:
                            raise ProbeError(f"gRPC status {status}")
                        return bytes(body[5:])
                sock.sendall(connection.data_to_send())
    except OSError as exc:
        raise ProbeError(str(exc) or type(exc).__name__) from exc


def has_stream(host: str, port: int, stream: str, timeout: float) -> bool:
    """Whether the broker's metadata has ``stream`` (one FetchMetadata, no retries).

    Raises:
        ProbeError: The call failed.
    """
    request = wire.FetchMetadataRequest(streams=[stream]).encode()
    answer = unary_call(host, port, "/proto.API/FetchMetadata", request, timeout)
    response = wire.FetchMetadataResponse.decode(answer)
    return any(
        meta.name == stream and meta.error == wire.StreamMetadata.Error.OK
        for meta in response.streamMetadata
    )
