"""The two kinds of declaration the registry holds, in plain Python: no Dagster, no Spark."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from butterfree.transform.aggregated_feature_set import AggregatedFeatureSet


@dataclass(frozen=True)
class FeatureSetSource:
    """A butterfree feature set bound to the raw event asset it reads, as butterfree's
    `FeatureSetPipeline(source=Source(readers, query), feature_set=...)` binds them.

    `query` is Spark SQL over the source, the table named after the asset
    (`select *, ... from chargeback_events`); it may derive columns and filter rows, row by
    row, and must keep the feature set's key and timestamp columns.

    `fresh_by` is the UTC time of day by which day D's states must exist (computed after 00:00
    of D); the UI shows the feature set failing its freshness policy once it is missed. The
    daily run starts at 00:05, so a deadline must leave it time. None: no deadline.
    """

    feature_set: AggregatedFeatureSet
    source: str
    query: str | None = None
    fresh_by: dt.time | None = dt.time(1, 0)

    @property
    def name(self) -> str:
        return self.feature_set.name


@dataclass(frozen=True)
class TrainingSet:
    """A point-in-time training set: a spine of events, each enriched with the state of every
    listed feature set at the event's time, as Feast's `get_historical_features` does.

    Columns: the spine's columns in order, its time column renamed `timestamp` and followed by
    the label, then every feature column of the feature sets in the order listed.
    """

    name: str
    description: str
    spine: str
    timestamp: str
    label: str
    feature_sets: Sequence[AggregatedFeatureSet] = field(default_factory=tuple)

    @property
    def feature_set_names(self) -> tuple[str, ...]:
        return tuple(fs.name for fs in self.feature_sets)
