"""Fixtures for the OpenTelemetry tests: in-memory exporters and an instrumented client.

Each test gets its own tracer and meter providers (never the global ones), so
spans and metrics from one test never show up in another.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from lbwire.client import LiftbridgeClient
from lbwire.otel import Instrumentation, instrument
from lbwire.testing import LiftbridgeServer


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(spans: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    yield provider
    provider.shutdown()


@pytest.fixture
def metrics() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def meter_provider(metrics: InMemoryMetricReader) -> Iterator[MeterProvider]:
    provider = MeterProvider(metric_readers=[metrics])
    yield provider
    provider.shutdown()


@pytest.fixture
async def client(liftbridge_server: LiftbridgeServer) -> AsyncIterator[LiftbridgeClient]:
    async with LiftbridgeClient([liftbridge_server.broker]) as client:
        yield client


@pytest.fixture
def idle_client() -> LiftbridgeClient:
    """A client that is never opened, so it contacts nothing (for tests without I/O)."""
    return LiftbridgeClient(["127.0.0.1:9"])


@pytest.fixture
def instrumentation(
    client: LiftbridgeClient, tracer_provider: TracerProvider, meter_provider: MeterProvider
) -> Instrumentation:
    return instrument(client, tracer_provider=tracer_provider, meter_provider=meter_provider)


@pytest.fixture
async def stream(client: LiftbridgeClient, stream_name: str) -> str:
    """A new one-partition stream, created before the client is instrumented."""
    await client.create_stream(stream_name, wait_for_stream=True)
    return stream_name
