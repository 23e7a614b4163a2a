"""Enabling and removing the instrumentation, and staying out of `import lbwire.client`."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from otel_support import finished

from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorInvalidArgument
from lbwire.otel import instrument, uninstrument


def test_importing_lbwire_client_does_not_import_opentelemetry() -> None:
    # A process of its own: this one imported opentelemetry for the other tests.
    code = (
        "import sys, lbwire.client, lbwire.observer\n"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] == 'opentelemetry')\n"
        "assert not leaked, leaked\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_instrumenting_twice_is_refused(idle_client: LiftbridgeClient) -> None:
    instrument(idle_client)
    with pytest.raises(ErrorInvalidArgument, match="instrumented already"):
        instrument(idle_client)


def test_an_uninstrumented_client_has_its_own_methods_back(idle_client: LiftbridgeClient) -> None:
    client = idle_client
    instrumentation = instrument(client)
    assert "publish" in vars(client)
    assert client.observer is instrumentation
    uninstrument(client)
    assert "publish" not in vars(client)
    assert "subscribe" not in vars(client)
    assert client.observer is None
    assert client.publish.__func__ is LiftbridgeClient.publish  # type: ignore[attr-defined]
    uninstrument(client)  # a second time is a no-op
    instrument(client)  # and it can be instrumented again
    uninstrument(client)


def test_wrappers_keep_the_methods_names_and_signatures(idle_client: LiftbridgeClient) -> None:
    client = idle_client
    instrument(client)
    for name in ("publish", "subscribe", "delete_stream", "publish_bulk"):
        method = getattr(client, name)
        assert method.__name__ == name
        own = getattr(LiftbridgeClient, name)
        assert inspect.signature(method) == inspect.signature(own.__get__(client))


@pytest.mark.anyio
async def test_calls_after_uninstrument_record_nothing(
    client: LiftbridgeClient,
    stream: str,
    tracer_provider: TracerProvider,
    spans: InMemorySpanExporter,
) -> None:
    instrument(client, tracer_provider=tracer_provider)
    await client.publish(b"x", stream=stream)
    uninstrument(client)
    await client.publish(b"y", stream=stream)
    assert len(finished(spans, SpanKind.PRODUCER)) == 1
