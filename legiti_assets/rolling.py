"""Rolling-window counts and point-in-time joins, computed so that cost grows with events.

butterfree's `AggregatedFeatureSet.construct` builds every (user, day) pair before dropping the
unchanged ones, so its cost grows with users x days. Here the same declarations are computed
from deltas instead: an event on day d enters a w-day window on day d + 1 and leaves it on day
d + w + 1, so a running sum of those +1/-1 per user is the window's count, and a user only gets
a row on the days where some delta is non-zero, i.e. where its state changed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from butterfree.transform.aggregated_feature_set import AggregatedFeatureSet
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

TIMESTAMP = "timestamp"


@dataclass(frozen=True)
class WindowedCount:
    """One output column: a count over the `days` days before the state's day."""

    column: str
    days: int
    description: str


@dataclass(frozen=True)
class RollingCountSpec:
    """What `compute_rolling_counts` needs from a butterfree declaration."""

    name: str
    entity: str
    description: str
    key: str
    key_description: str
    event_timestamp: str
    counts: tuple[WindowedCount, ...]

    @property
    def lookback_days(self) -> int:
        """Days of events before a partition that can change that partition's rows."""
        return max(c.days for c in self.counts) + 1

    @property
    def columns(self) -> list[str]:
        return [self.key, TIMESTAMP, *(c.column for c in self.counts)]


def _window_days(definition: str) -> int:
    size, unit = definition.split()
    if unit not in ("day", "days"):
        raise ValueError(f"only windows in days are supported, got {definition!r}")
    return int(size)


def rolling_count_spec(feature_set: AggregatedFeatureSet) -> RollingCountSpec:
    """Read a count-over-daily-windows declaration; refuse what this engine cannot compute."""
    metadata = feature_set.build_metadata()
    if len(feature_set.keys) != 1:
        raise ValueError(f"{feature_set.name}: exactly one key is supported")
    if feature_set._pivot_column is not None:  # no public accessor in butterfree 1.8
        raise ValueError(f"{feature_set.name}: pivots are not supported")
    for feature in feature_set.features:
        names = [f.func.__name__ for f in feature.transformation.functions]
        if names != ["count"]:
            raise ValueError(f"{feature_set.name}.{feature.name}: only count is supported")
    windows = metadata.windows_definition or []
    if not windows:
        raise ValueError(f"{feature_set.name}: declare rolling windows with .with_windows()")
    # butterfree orders feature columns as feature x window, the order of build_metadata()
    feature_columns = [f for f in metadata.features if f.name in feature_set.features_columns]
    counts = tuple(
        WindowedCount(
            column=column.name,
            days=_window_days(window),
            description=f"{column.description} Window: {window}.",
        )
        for column, window in zip(feature_columns, windows * len(feature_set.features), strict=True)
    )
    key = feature_set.keys[0]
    return RollingCountSpec(
        name=feature_set.name,
        entity=feature_set.entity,
        description=feature_set.description,
        key=key.name,
        key_description=key.description,
        event_timestamp=feature_set.timestamp.from_column or TIMESTAMP,
        counts=counts,
    )


def compute_rolling_counts(
    events: DataFrame, spec: RollingCountSpec, first_day: dt.date, last_day: dt.date
) -> DataFrame:
    """Rows `(key, timestamp = D 00:00 UTC, counts)` for each day D in [first_day, last_day]
    on which a key's state differs from the day before.

    `events` needs the key and the event timestamp for at least the `lookback_days` days before
    `first_day` up to the day before `last_day`; other rows are ignored.
    """
    day = F.to_date(F.col(spec.event_timestamp))
    lookback_start = first_day - dt.timedelta(days=spec.lookback_days)
    # One shuffle, by key: the per-day counts, the per-day deltas and the running sums below
    # all group by the key (and more), so Spark reuses this partitioning instead of shuffling
    # three times.
    daily = (
        events.where(day.between(F.lit(lookback_start), F.lit(last_day - dt.timedelta(days=1))))
        .select(spec.key, day.alias("day"))
        .repartition(spec.key)
        .groupBy(spec.key, "day")
        .agg(F.count(F.lit(1)).alias("n"))
    )
    n_windows = len(spec.counts)
    enters = F.struct(
        F.date_add("day", 1).alias("at"), F.array(*[F.col("n")] * n_windows).alias("delta")
    )
    leaves = [
        F.struct(
            F.date_add("day", c.days + 1).alias("at"),
            F.array(
                *[-F.col("n") if j == i else F.lit(0).cast("long") for j in range(n_windows)]
            ).alias("delta"),
        )
        for i, c in enumerate(spec.counts)
    ]
    deltas = (
        daily.select(spec.key, F.explode(F.array(enters, *leaves)).alias("d"))
        .where(F.col("d.at") <= F.lit(last_day))
        .groupBy(spec.key, F.col("d.at").alias("at"))
        .agg(*[F.sum(F.col("d.delta")[i]).alias(f"delta_{i}") for i in range(n_windows)])
    )
    running = Window.partitionBy(spec.key).orderBy("at").rowsBetween(Window.unboundedPreceding, 0)
    changed = F.lit(False)
    for i in range(n_windows):
        changed = changed | (F.col(f"delta_{i}") != 0)
    return (
        deltas.select(
            spec.key,
            "at",
            changed.alias("changed"),
            *[F.sum(f"delta_{i}").over(running).alias(c.column) for i, c in enumerate(spec.counts)],
        )
        .where(F.col("changed") & (F.col("at") >= F.lit(first_day)))
        .select(
            spec.key,
            F.col("at").cast("timestamp").alias(TIMESTAMP),
            *[F.col(c.column).cast("int").alias(c.column) for c in spec.counts],
        )
    )


def asof_column(feature_set: str) -> str:
    """Column holding the timestamp of the feature-set row an order was joined with."""
    return f"{feature_set}__asof"


def point_in_time_join(
    orders: DataFrame,
    feature_sets: Sequence[tuple[RollingCountSpec, DataFrame]],
    *,
    order_timestamp: str,
) -> DataFrame:
    """Each order with, for each feature set independently, the values of that set's latest row
    for the same key with `timestamp <= order_timestamp` (0 when there is none), plus that row's
    timestamp in `asof_column(name)`.

    One sort per key of orders and states together, instead of a range join of all states
    against all orders.
    """
    key = feature_sets[0][0].key
    kind, at = "_kind", "_at"
    # states sort before orders at the same instant: a state dated exactly at the order applies
    parts = [orders.withColumn(at, F.col(order_timestamp)).withColumn(kind, F.lit(1))]
    for spec, states in feature_sets:
        parts.append(
            states.select(
                spec.key,
                F.col(TIMESTAMP).alias(at),
                F.lit(0).alias(kind),
                F.col(TIMESTAMP).alias(asof_column(spec.name)),
                *[c.column for c in spec.counts],
            )
        )
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part, allowMissingColumns=True)
    history = Window.partitionBy(key).orderBy(at, kind).rowsBetween(Window.unboundedPreceding, 0)

    def latest(column: str) -> Column:
        return F.last(column, ignorenulls=True).over(history)

    carried: list[Column] = []
    for spec, _ in feature_sets:
        carried.append(latest(asof_column(spec.name)).alias(asof_column(spec.name)))
        carried += [
            F.coalesce(latest(c.column), F.lit(0)).cast("int").alias(c.column) for c in spec.counts
        ]
    return union.select(*orders.columns, kind, *carried).where(F.col(kind) == 1).drop(kind)
