"""The consumer-lag gauge: the readers and group members it reports, held weakly.

The semantic conventions name no lag metric, so the gauge has a name of
lbwire's own (`LAG_METRIC`). Its callback runs when a metric reader collects,
maybe in the reader's own thread: it asks each source for `known_lag()`, which
reads values the source already holds (no call to a broker, nothing that
waits), and never raises.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from typing import Any, Dict, List, Protocol, Tuple

from opentelemetry.metrics import CallbackOptions, Observation

from .._log import LazyLogger
from ._conventions import Attributes

__all__ = ["LAG_METRIC", "LagSources"]

LAG_METRIC = "lbwire.client.consumer.lag"

logger = LazyLogger("lbwire")


class LagSource(Protocol):
    """A `StreamReader` or a consumer group member."""

    def known_lag(self) -> Mapping[Any, int]: ...


class LagSources:
    """The readers and members whose lag the gauge reports, each with its attributes.

    Held by weak reference: one the program drops leaves the gauge with it,
    and one that is closed reports nothing (`known_lag` is empty then).
    """

    def __init__(self) -> None:
        self._sources: Dict[int, Tuple[weakref.ReferenceType[LagSource], Attributes]] = {}
        self._failed = False

    def add(self, source: LagSource, attributes: Attributes) -> None:
        """Report `source`'s lag with `attributes` (plus the partition's) while it lives."""
        key = id(source)
        sources = self._sources

        def forget(ref: weakref.ReferenceType[LagSource]) -> None:
            # Another source may have the same id by now (the callback can
            # come late without reference counting): drop only this one.
            entry = sources.get(key)
            if entry is not None and entry[0] is ref:
                del sources[key]

        sources[key] = (weakref.ref(source, forget), attributes)

    def clear(self) -> None:
        self._sources.clear()

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        """The gauge's callback: a point per partition of each open source."""
        observations: List[Observation] = []
        # list(): a copy taken in one step, as this may run in another thread.
        for ref, attributes in list(self._sources.values()):
            source = ref()
            if source is None:
                continue
            try:
                points = []
                for partition, lag in source.known_lag().items():
                    point = dict(attributes)
                    if isinstance(partition, tuple):  # a member's (stream, partition)
                        point["messaging.destination.name"] = partition[0]
                        partition = partition[1]
                    point["messaging.destination.partition.id"] = str(partition)
                    points.append(Observation(lag, point))
                observations.extend(points)
            except Exception:
                # Observers never break the data path, nor the other sources.
                if not self._failed:
                    self._failed = True
                    logger.warning(
                        "The lag of %r could not be read (skipped; logged once)",
                        source,
                        exc_info=True,
                    )
        return observations
