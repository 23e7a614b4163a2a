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


def metric_points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    """The data points of metric `name` (empty if it was never recorded)."""
    data = reader.get_metrics_data()
    points: list[Any] = []
    if data is None:
        return points
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    points.extend(metric.data.data_points)
    return points


def metric_total(reader: InMemoryMetricReader, name: str, **attributes: Any) -> float:
    """Sum of a counter's points (or a histogram's counts) whose attributes include these."""
    total = 0.0
    for point in metric_points(reader, name):
        if all(point.attributes.get(k) == v for k, v in attributes.items()):
            total += point.count if hasattr(point, "count") else point.value
    return total
