"""lbwire.sync.LiftbridgeClient against the real server: calls, iterators, threads, Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from lbwire.client import LiftbridgeClient as AsyncLiftbridgeClient
from lbwire.consumer import AutoOffset
from lbwire.error import ErrorNotFound
from lbwire.sync import LiftbridgeClient
from lbwire.testing import LiftbridgeServer
from lbwire.types import AckPolicy, HealthStatus, StartPosition

REPO = Path(__file__).resolve().parents[2]
HANG_GUARD = 30.0


@pytest.fixture(params=["asyncio", "trio"])
def client(request, liftbridge_server: LiftbridgeServer) -> Iterator[LiftbridgeClient]:
    with LiftbridgeClient([liftbridge_server.broker], backend=request.param) as client:
        yield client


def portal_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "lbwire-sync"]


def test_publish_then_subscribe(client, stream_name):
    client.create_stream(stream_name, wait_for_stream=True)
    ack = client.publish(b"hello", stream=stream_name, key=b"k")
    assert ack is not None
    assert ack.offset == 0
    messages = client.subscribe(stream_name, start_position=StartPosition.EARLIEST)
    message = next(messages)
    messages.close()
    assert (message.value, message.key, message.offset) == (b"hello", b"k", 0)


def test_wrappers_carry_the_async_names_and_docs():
    for name in ("publish", "subscribe", "get_metadata", "create_stream", "publish_bulk"):
        method = getattr(LiftbridgeClient, name)
        assert method.__name__ == name
        assert method.__doc__ == getattr(AsyncLiftbridgeClient, name).__doc__


def test_every_public_method_of_the_async_client_is_here():
    # Inherited methods too: the async client gets most of them from its facets.
    public = [
        name
        for name in dir(AsyncLiftbridgeClient)
        if not name.startswith("_") and callable(getattr(AsyncLiftbridgeClient, name))
    ]
    assert public
    assert [name for name in public if not hasattr(LiftbridgeClient, name)] == []


def test_settings_of_the_async_client_are_readable(client, liftbridge_server):
    assert client.broker_seeds == [liftbridge_server.broker]
    assert client.rpc_timeout > 0
    with pytest.raises(AttributeError):
        client.no_such_setting  # noqa: B018


def test_subscribe_iterates_many_messages_in_order(client, stream_name):
    client.create_stream(stream_name, wait_for_stream=True)
    requests = [
        client.get_publish_request(str(i).encode(), stream=stream_name) for i in range(2000)
    ]
    acks = list(client.publish_bulk(requests))
    assert [r.ack.offset for r in acks] == list(range(2000))
    values = []
    for message in client.subscribe(stream_name, start_position=StartPosition.EARLIEST):
        values.append(message.value)
        if len(values) == 2000:
            break
    assert values == [str(i).encode() for i in range(2000)]


def test_publish_async_returns_a_future_of_the_ack(client, stream_name):
    client.create_stream(stream_name, wait_for_stream=True)
    futures = [client.publish_async(b"x", stream=stream_name) for _ in range(100)]
    assert [f.result(timeout=HANG_GUARD).offset for f in futures] == list(range(100))
    assert (
        client.publish_async(b"x", stream=stream_name, ack_policy=AckPolicy.NONE).result() is None
    )


def test_cursors_and_metadata(client, stream_name):
    client.create_stream(stream_name, partitions=2, wait_for_stream=True)
    assert client.get_cursor(stream_name, 1, "c") == -1
    client.set_cursor(stream_name, 1, "c", 41)
    assert client.get_cursor(stream_name, 1, "c") == 42
    [stream] = client.get_metadata(stream_name).metadata
    assert sorted(stream.partitions) == [0, 1]


def test_health_check_and_watch(client):
    assert client.health() is HealthStatus.SERVING
    statuses = client.watch_health()
    assert next(statuses) is HealthStatus.SERVING
    statuses.close()


def test_errors_are_the_async_clients(client, stream_name):
    with pytest.raises(ErrorNotFound):
        client.delete_stream(stream_name)
    with pytest.raises(ErrorNotFound):
        next(client.subscribe(stream_name))


def test_several_threads_publish_at_once(client, stream_name):
    client.create_stream(stream_name, wait_for_stream=True)
    offsets: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def publish(worker: int) -> None:
        try:
            for i in range(100):
                ack = client.publish(f"{worker}-{i}".encode(), stream=stream_name)
                with lock:
                    offsets.append(ack.offset)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG_GUARD)
    assert errors == []
    assert sorted(offsets) == list(range(800))
    values = set()
    for message in client.subscribe(stream_name, start_position=StartPosition.EARLIEST):
        values.add(message.value)
        if len(values) == 800:
            break
    assert values == {f"{w}-{i}".encode() for w in range(8) for i in range(100)}


def test_breaking_out_of_a_subscription_leaves_the_client_usable(client, stream_name):
    client.create_stream(stream_name, wait_for_stream=True)
    for value in (b"a", b"b", b"c"):
        client.publish(value, stream=stream_name)
    for message in client.subscribe(stream_name, start_position=StartPosition.EARLIEST):
        assert message.value == b"a"
        break
    assert client.publish(b"d", stream=stream_name).offset == 3


def test_consumer_group_member(client, stream_name):
    client.create_stream(stream_name, wait_for_stream=True)
    for value in (b"a", b"b", b"c"):
        client.publish(value, stream=stream_name)
    with client.consumer(
        "g-" + stream_name, [stream_name], auto_offset=AutoOffset.EARLIEST
    ) as member:
        got = [next(member).value for _ in range(3)]
        assert member.assignments == {stream_name: [0]}
    assert got == [b"a", b"b", b"c"]
    # Leaving committed the last message as processed (go-liftbridge's convention).
    assert client.get_cursor(stream_name, 0, member.cursor_id) == 2


def test_consumer_member_controls(client, stream_name):
    client.create_stream(stream_name, partitions=2, wait_for_stream=True)
    for partition in (0, 1):
        for value in (b"a", b"b", b"c"):
            client.publish(value, stream=stream_name, partition=partition)
    with client.consumer(
        "g-" + stream_name,
        [stream_name],
        auto_offset=AutoOffset.EARLIEST,
        auto_checkpoint_interval=None,
    ) as member:
        member.wait_assigned()
        member.pause(1)
        assert [(m.partition, m.offset) for m in (next(member) for _ in range(3))] == [
            (0, 0),
            (0, 1),
            (0, 2),
        ]
        member.seek(0, 1)
        assert next(member).offset == 1
        member.resume(1)
        member.commit({0: 3, 1: 1})
        assert client.get_cursor(stream_name, 0, member.cursor_id) == 2
        assert member.lag() == {(stream_name, 0): 0, (stream_name, 1): 2}
        assert member.known_lag() == {(stream_name, 0): 0, (stream_name, 1): 2}
        with pytest.raises(ValueError, match="not assigned"):
            member.seek(5, 0)


def test_whole_stream_reader(client, stream_name):
    client.create_stream(stream_name, partitions=2, wait_for_stream=True)
    for partition in (0, 1):
        for value in (b"a", b"b"):
            client.publish(value, stream=stream_name, partition=partition)
    with client.reader(stream_name, cursor_id="r", commit_interval=None) as reader:
        got = [next(reader) for _ in range(3)]
        batch = next(reader.batches(10, 0))
        assert reader.highwater() == {0: 1, 1: 1}
        assert reader.lag() == {0: 2, 1: 2}  # nothing committed yet
        reader.commit()  # the three single messages; the batch is still in hand
        assert sum(reader.committed().values()) == 3
        assert sum(reader.lag().values()) == 1
        assert sum(reader.known_lag().values()) == 1
    assert sorted((m.partition, m.offset) for m in got + batch) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    # Leaving the block committed the batch in hand too.
    assert [client.get_cursor(stream_name, p, "r") for p in (0, 1)] == [2, 2]


def test_close_from_another_thread_ends_a_blocked_subscription(liftbridge_server, stream_name):
    client = LiftbridgeClient([liftbridge_server.broker])
    client.create_stream(stream_name, wait_for_stream=True)
    first = threading.Event()
    ended = threading.Event()

    def read() -> None:
        for _ in client.subscribe(stream_name):  # NEW_ONLY: blocks after the first
            first.set()
        ended.set()

    reader = threading.Thread(target=read)
    reader.start()
    # The subscription may start after a publish: publish until it sees one.
    while not first.wait(0.05):
        client.publish(b"x", stream=stream_name)
    client.close()
    reader.join(HANG_GUARD)
    assert ended.is_set()
    assert portal_threads() == []
    with pytest.raises(RuntimeError, match="closed"):
        client.get_metadata()
    client.close()  # twice is fine


SIGINT_SCRIPT = textwrap.dedent(
    """
    import sys, threading
    from lbwire.sync import LiftbridgeClient
    with LiftbridgeClient([sys.argv[1]]) as client:
        client.create_stream(sys.argv[2], wait_for_stream=True)
        client.publish(b"x", stream=sys.argv[2])
        try:
            for message in client.subscribe(sys.argv[2], start_position=2):
                print("got", message.value.decode(), flush=True)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        # The client still works after the interrupted subscription...
        print("offset", client.publish(b"y", stream=sys.argv[2]).offset, flush=True)
    # ...and closing it ended every thread it started.
    print("threads", threading.active_count(), flush=True)
    """
)


def test_ctrl_c_during_subscribe_cancels_it_cleanly(liftbridge_server, stream_name):
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    process = subprocess.Popen(
        [sys.executable, "-c", SIGINT_SCRIPT, liftbridge_server.broker, stream_name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"got x\n"  # now blocked waiting for more
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=HANG_GUARD)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err.decode()
    assert out.decode().splitlines() == ["interrupted", "offset 1", "threads 1"]


BLOCKED_CALL_SCRIPT = textwrap.dedent(
    """
    import sys, threading
    from lbwire.sync import LiftbridgeClient
    with LiftbridgeClient([sys.argv[1]]) as client:
        try:
            print("waiting", flush=True)
            client.wait_for_stream(sys.argv[2])  # never created: blocks
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        print("brokers", len(client.get_metadata().brokers), flush=True)
    print("threads", threading.active_count(), flush=True)
    """
)


def test_ctrl_c_during_a_blocking_call_cancels_it(liftbridge_server, stream_name):
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    process = subprocess.Popen(
        [sys.executable, "-c", BLOCKED_CALL_SCRIPT, liftbridge_server.broker, stream_name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"waiting\n"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=HANG_GUARD)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err.decode()
    assert out.decode().splitlines() == ["interrupted", "brokers 1", "threads 1"]


def test_context_holds_an_async_context_manager_in_one_task(client, stream_name):
    # What generated methods of async context managers return: entered and
    # left by one task of the loop thread, so it may hold a cancel scope
    # (leaving one in another task raises), and told of the block's exception.
    seen: list[object] = []

    @contextlib.asynccontextmanager
    async def temporary_stream(async_client):
        with anyio.CancelScope():
            await async_client.create_stream(stream_name, wait_for_stream=True)
            try:
                yield stream_name
            except ValueError as exc:
                seen.append(exc)
                raise
            finally:
                await async_client.delete_stream(stream_name)

    with client.context(temporary_stream(client.async_client)) as name:
        assert client.publish(b"x", stream=name).offset == 0
    assert client.get_metadata(stream_name).metadata == []
    with pytest.raises(ValueError, match="boom"):  # noqa: SIM117
        with client.context(temporary_stream(client.async_client)):
            raise ValueError("boom")
    assert [str(e) for e in seen] == ["boom"]
    assert client.get_metadata(stream_name).metadata == []
