"""The blocking client's table: the async table's methods, blocking; watch as a plain iterator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lbwire import serde
from lbwire.error import ErrorRevisionMismatch
from lbwire.sync import LiftbridgeClient
from lbwire.table import ABSENT
from lbwire.testing import LiftbridgeServer


@pytest.fixture(params=["asyncio", "trio"])
def client(request, liftbridge_server: LiftbridgeServer) -> Iterator[LiftbridgeClient]:
    with LiftbridgeClient([liftbridge_server.broker], backend=request.param) as client:
        yield client


def test_blocking_table_puts_gets_and_watches(client, stream_name):
    with client.table(
        stream_name, key_serializer=serde.serialize_str, key_deserializer=serde.deserialize_str
    ) as table:
        assert table.fenced
        first = table.put("k", b"1", expected=ABSENT)
        entry = table.get("k")
        assert entry is not None
        assert (entry.value, entry.revision) == (b"1", first)
        with pytest.raises(ErrorRevisionMismatch):
            table.put("k", b"2", expected=ABSENT)
        changes = table.watch()
        assert next(changes).value == b"1"  # the current value first
        deleted = table.delete("k", expected=first)
        change = next(changes)
        assert (change.key, change.deleted, change.revision) == ("k", True, deleted)
        changes.close()
        assert table.get("k") is None
        assert table.keys() == []
        assert table.items() == []
