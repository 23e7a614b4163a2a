"""Helpers for the OpenTelemetry tests (imported as ``otel_support``)."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind


def finished(spans: InMemorySpanExporter, kind: SpanKind) -> list[ReadableSpan]:
    """The finished spans of one kind, oldest first."""
    return [span for span in spans.get_finished_spans() if span.kind == kind]


def ids(context: SpanContext | None) -> tuple[int, int]:
    """A span context's trace and span ids (remote or not: links and parents compare so)."""
    assert context is not None
    return context.trace_id, context.span_id


def collect(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """Every metric's data points, by name, from one collection.

    One collection per check: SDK 1.20 reports a cumulative histogram with no
    new measurement since the previous collection as empty.
    """
    points: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    if data is None:
        return points
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points.setdefault(metric.name, []).extend(metric.data.data_points)
    return points


def total(points: dict[str, list[Any]], name: str, **attributes: Any) -> float:
    """Sum of a counter's points (or a histogram's counts) whose attributes include these."""
    result = 0.0
    for point in points.get(name, []):
        if all(point.attributes.get(k) == v for k, v in attributes.items()):
            result += point.count if hasattr(point, "count") else point.value
    return result
