"""A grpcio server in a process of its own, streaming as fast as it is let.

Run as ``python flood_server.py``: prints its port (127.0.0.1) on stdout, then
serves until its stdin is closed. Methods of ``/lbwire.test.Flood/``:

* ``Stream`` (server streaming): request ``b"<count>:<size>"``; sends count
  messages of size bytes.
* ``Handed`` (unary): how many messages of the running ``Stream`` calls grpcio
  has taken so far (decimal). grpcio asks the handler for the next message
  only once the previous one is on its way, so this stops growing when the
  client's flow-control window is full.

A separate process, so that the test process's memory is the client's alone.
"""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import grpc

SERVICE = "lbwire.test.Flood"


def main() -> None:
    handed = 0
    lock = threading.Lock()

    def stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        nonlocal handed
        count, _, size = request.partition(b":")
        payload = b"f" * int(size)
        for _ in range(int(count)):
            with lock:
                handed += 1
            yield payload

    def handed_so_far(request: bytes, context: grpc.ServicerContext) -> bytes:
        with lock:
            return b"%d" % handed

    server = grpc.server(
        ThreadPoolExecutor(max_workers=4),
        options=[("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0)],
    )
    handlers = {
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
        "Handed": grpc.unary_unary_rpc_method_handler(handed_so_far),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    sys.stdin.read()  # until the test closes our stdin (or dies)
    server.stop(None).wait()


if __name__ == "__main__":
    main()
