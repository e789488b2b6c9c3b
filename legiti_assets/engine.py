"""Rolling-window aggregations of butterfree declarations, computed so that cost grows with events.

butterfree's `AggregatedFeatureSet.construct` builds every (key, day) pair before dropping the
unchanged ones: its cost grows with keys x days. Here the same declarations are computed from
the events instead. A key's state over a `w`-day window can only change on the day after one
of its event days (the events enter) or `w + 1` days after it (they leave), so the states are
evaluated at those days only, each over the per-day partial aggregates of its window:

    state(u, D) = aggregate of from_column (after the filter) over u's events, D - w <= t < D

Windows are whole UTC days, so `D - w <= t < D` is "the event's day is in D - w .. D - 1".
Counts, and sums of integers, are exact running sums of what enters and leaves each window.
Everything else is recomputed for each evaluated day over a range frame of the window's days
(Spark's sliding frame), never kept as a running sum of floats: a window that empties reads
null, never 1e-13. Work per evaluated day is bounded by the window's days (min, max, float sums)
or its events (distinct counts and variances, which need the values): events x window days at
worst.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from butterfree.constants import DataType
from butterfree.transform.aggregated_feature_set import AggregatedFeatureSet
from butterfree.transform.transformations import AggregatedTransform
from pyspark.sql import Column, DataFrame, SparkSession, Window, WindowSpec
from pyspark.sql import functions as F
from pyspark.sql.types import IntegralType

from legiti_assets import butterfree_compat
from legiti_assets.feature_sets import FeatureSetSource

TIMESTAMP = "timestamp"
EPOCH = dt.date(1970, 1, 1)

# pyspark function -> what it computes. Matched by identity, so a look-alike is refused.
FUNCTIONS: dict[Callable[..., Column], str] = {
    F.count: "count",
    F.sum: "sum",
    F.avg: "avg",
    F.mean: "avg",
    F.min: "min",
    F.max: "max",
    F.stddev_pop: "stddev_pop",
    F.stddev_samp: "stddev_samp",
    F.stddev: "stddev_samp",
    F.std: "stddev_samp",
    F.var_pop: "var_pop",
    F.var_samp: "var_samp",
    F.variance: "var_samp",
    F.count_distinct: "count_distinct",
    F.countDistinct: "count_distinct",
}
# Over an empty window these give 0; every other function gives null.
COUNT_LIKE = frozenset({"count", "count_distinct"})
INTEGER_TYPES = frozenset({"int", "bigint"})
NUMBER_TYPES = INTEGER_TYPES | {"float", "double"}
WINDOW_UNITS = {"day": 1, "days": 1, "week": 7, "weeks": 7}


class DeclarationError(ValueError):
    """A declaration this engine cannot compute; raised when definitions load."""


@dataclass(frozen=True)
class Aggregate:
    """One output column: `function` of a feature's values over the `days` days before the
    state's day."""

    column: str
    feature: str
    from_column: str
    filter_expression: str | None
    function: str
    days: int
    dtype: str
    description: str

    @property
    def count_like(self) -> bool:
        return self.function in COUNT_LIKE

    @property
    def values(self) -> tuple[str, str | None]:
        """What is aggregated; aggregates of the same values share their partials."""
        return (self.from_column, self.filter_expression)


def _values(from_column: str, filter_expression: str | None) -> Column:
    """`from_column` where the filter holds, else null: butterfree's
    `agg(case when filter then col end)`."""
    if filter_expression:
        return F.when(F.expr(filter_expression), F.col(from_column))
    return F.col(from_column)


@dataclass(frozen=True)
class FeatureSetSpec:
    """What the engine, the assets and the stores need from one registry entry."""

    name: str
    entity: str
    description: str
    key: str
    key_description: str
    event_timestamp: str
    source: str
    query: str | None
    aggregates: tuple[Aggregate, ...]
    fresh_by: dt.time | None = None

    @property
    def lookback_days(self) -> int:
        """Days of events before a partition that can change that partition's rows: the
        longest window, plus the day before the partition its states are compared with."""
        return max(a.days for a in self.aggregates) + 1

    @property
    def windows(self) -> tuple[int, ...]:
        return tuple(sorted({a.days for a in self.aggregates}))

    @property
    def columns(self) -> list[str]:
        return [self.key, TIMESTAMP, *(a.column for a in self.aggregates)]

    @property
    def version(self) -> str:
        """Changes whenever what is computed changes (not with descriptions)."""
        semantics = {
            "key": self.key,
            "timestamp": self.event_timestamp,
            "source": self.source,
            "query": self.query,
            "aggregates": [
                [a.column, a.from_column, a.filter_expression, a.function, a.days, a.dtype]
                for a in self.aggregates
            ],
        }
        return hashlib.sha256(json.dumps(semantics).encode()).hexdigest()[:16]


def _window_days(feature_set: str, definition: str) -> int:
    size, _, unit = definition.partition(" ")
    if unit not in WINDOW_UNITS or not size.isdigit() or int(size) < 1:
        raise DeclarationError(
            f"feature set {feature_set}: window {definition!r} is not a whole number of days "
            "or weeks; only 'N days' and 'N weeks' windows are supported"
        )
    return int(size) * WINDOW_UNITS[unit]


def _function(feature_set: str, feature: str, function: object, dtype: DataType) -> str:
    name = FUNCTIONS.get(function)  # type: ignore[call-overload]
    shown = getattr(function, "__name__", repr(function))
    if name is None:
        raise DeclarationError(
            f"feature set {feature_set}, feature {feature}: function {shown!r} is not supported; "
            f"supported: {', '.join(sorted({f.__name__ for f in FUNCTIONS}))}"
        )
    spark_type = dtype.spark.simpleString()
    if spark_type not in NUMBER_TYPES or (name in COUNT_LIKE and spark_type not in INTEGER_TYPES):
        wanted = "INTEGER or BIGINT" if name in COUNT_LIKE else "INTEGER, BIGINT, FLOAT or DOUBLE"
        raise DeclarationError(
            f"feature set {feature_set}, feature {feature}: {shown} is declared as "
            f"{dtype.name}; declare DataType.{wanted}"
        )
    return name


def _describe(
    description: str, function: object, window: str, transform: AggregatedTransform
) -> str:
    where = f", where {transform.filter_expression}" if transform.filter_expression else ""
    return (
        f"{description} Aggregate: {getattr(function, '__name__', function)} over {window}{where}."
    )


def feature_set_spec(entry: FeatureSetSource) -> FeatureSetSpec:
    """Read a registry entry; refuse, naming feature set and feature, what cannot be computed."""
    fs = entry.feature_set
    if not isinstance(fs, AggregatedFeatureSet):
        raise DeclarationError(f"{fs!r} is not a butterfree AggregatedFeatureSet")
    internals = butterfree_compat.internals(fs)
    if internals.pivot_column is not None:
        raise DeclarationError(f"feature set {fs.name}: pivots are not supported")
    if internals.distinct_subset:
        raise DeclarationError(f"feature set {fs.name}: with_distinct is not supported")
    if len(fs.keys) != 1:
        raise DeclarationError(f"feature set {fs.name}: exactly one key is supported")
    key = fs.keys[0]
    if key.dtype != DataType.STRING:
        raise DeclarationError(
            f"feature set {fs.name}: key {key.name} is declared as {key.dtype.name}; stores and "
            "the server key by strings: declare DataType.STRING"
        )
    if key.transformation is not None or key.from_column not in (None, key.name):
        raise DeclarationError(
            f"feature set {fs.name}: key {key.name} must be a column of the source as it is; "
            "derive or rename it in the query"
        )
    timestamp = fs.timestamp
    if timestamp.transformation is not None or timestamp.mask or timestamp.from_ms:
        raise DeclarationError(
            f"feature set {fs.name}: the timestamp must be a timestamp column of the source as "
            "it is (no mask, from_ms or transformation); derive it in the query"
        )
    windows = fs.build_metadata().windows_definition or []
    if not windows:
        raise DeclarationError(f"feature set {fs.name}: declare windows with .with_windows()")
    for slide in internals.slides:
        if slide != "1 day":
            raise DeclarationError(
                f"feature set {fs.name}: slide {slide!r} is not supported; states are daily "
                "(slide '1 day')"
            )
    days = [_window_days(fs.name, w) for w in windows]
    aggregates = []
    for feature in fs.features:
        transform = feature.transformation
        if not isinstance(transform, AggregatedTransform):
            raise DeclarationError(
                f"feature set {fs.name}, feature {feature.name}: only AggregatedTransform "
                "features are supported"
            )
        if not feature.description:
            raise DeclarationError(f"feature set {fs.name}, feature {feature.name}: no description")
        for function in transform.functions:
            name = _function(fs.name, feature.name, function.func, function.data_type)
            for window, n_days in zip(windows, days, strict=True):
                aggregates.append(
                    Aggregate(
                        column=f"{feature.name}__{function.func.__name__.lower()}_over_"
                        + "_".join(window.split())
                        + "_rolling_windows",
                        feature=feature.name,
                        from_column=feature.from_column or feature.name,
                        filter_expression=transform.filter_expression,
                        function=name,
                        days=n_days,
                        dtype=function.data_type.spark.simpleString(),
                        description=_describe(
                            feature.description, function.func, window, transform
                        ),
                    )
                )
    # butterfree orders columns feature x function x window: the same order, or a bug here
    if [a.column for a in aggregates] != list(fs.features_columns):
        raise DeclarationError(
            f"feature set {fs.name}: columns {[a.column for a in aggregates]} differ from "
            f"butterfree's {fs.features_columns}"
        )
    return FeatureSetSpec(
        name=fs.name,
        entity=fs.entity,
        description=fs.description,
        key=key.name,
        key_description=key.description,
        event_timestamp=fs.timestamp.from_column or TIMESTAMP,
        source=entry.source,
        query=entry.query,
        aggregates=tuple(aggregates),
        fresh_by=_fresh_by(entry),
    )


def _fresh_by(entry: FeatureSetSource) -> dt.time | None:
    fresh_by = entry.fresh_by
    if fresh_by is not None and (
        fresh_by.tzinfo or fresh_by.second or fresh_by.microsecond or fresh_by == dt.time(0)
    ):
        raise DeclarationError(
            f"feature set {entry.name}: fresh_by={fresh_by} is not a UTC time of day after "
            "00:00 in whole minutes (day D's states exist from 00:00 of D), e.g. "
            "datetime.time(1, 0)"
        )
    return fresh_by


def with_query(events: DataFrame, spec: FeatureSetSpec) -> DataFrame:
    """The source as the feature set reads it: through its query, if it declares one."""
    if spec.query is None:
        return events
    spark = SparkSession.getActiveSession() or events.sparkSession
    events.createOrReplaceTempView(spec.source)
    try:
        derived = spark.sql(spec.query)
    except Exception as error:
        raise DeclarationError(f"feature set {spec.name}: its query failed: {error}") from error
    finally:
        spark.catalog.dropTempView(spec.source)
    missing = {spec.key, spec.event_timestamp} - set(derived.columns)
    if missing:
        raise DeclarationError(
            f"feature set {spec.name}: its query drops the columns {sorted(missing)}"
        )
    return derived


# Per-day partial aggregates: name -> (aggregate of the values within a day, combination of
# the days' partials over a window). Sums and counts add up; min and max of minima and maxima;
# distinct counts and variances need the values themselves.
Over = Callable[[Column, WindowSpec], Column]
_PARTIALS: dict[str, tuple[Callable[[Column], Column], Over]] = {
    "n": (F.count, lambda c, w: F.sum(c).over(w)),
    "sum": (F.sum, lambda c, w: F.sum(c).over(w)),
    "min": (F.min, lambda c, w: F.min(c).over(w)),
    "max": (F.max, lambda c, w: F.max(c).over(w)),
    "set": (F.collect_set, lambda c, w: F.flatten(F.collect_list(c).over(w))),
    "list": (
        lambda v: F.collect_list(v.cast("double")),
        lambda c, w: F.flatten(F.collect_list(c).over(w)),
    ),
}
_NEEDS: dict[str, tuple[str, ...]] = {
    "count": ("n",),
    "sum": ("sum", "n"),
    "avg": ("sum", "n"),
    "min": ("min",),
    "max": ("max",),
    "count_distinct": ("set",),
    **dict.fromkeys(("stddev_pop", "stddev_samp", "var_pop", "var_samp"), ("list",)),
}


def _variance(values: Column, function: str) -> Column:
    """Two passes over the window's values: the mean, then squared distances from it
    (numerically stable, unlike a sum of squares)."""
    n = F.size(values)
    mean = F.aggregate(values, F.lit(0.0), lambda acc, x: acc + x) / n
    m2 = F.aggregate(values, F.lit(0.0), lambda acc, x: acc + (x - mean) * (x - mean))
    population = function.endswith("_pop")
    var = F.when(n > (0 if population else 1), m2 / (n if population else n - 1))
    return F.sqrt(var) if function.startswith("stddev") else var


def _combine(aggregate: Aggregate, partial: Callable[[str], Column]) -> Column:
    function = aggregate.function
    if function == "count":
        return F.coalesce(partial("n"), F.lit(0))
    if function == "count_distinct":
        return F.size(F.array_distinct(partial("set")))
    if function == "avg":
        return F.when(partial("n") > 0, partial("sum") / partial("n"))
    if function == "sum":
        # a running sum of an emptied window is 0, not null: emptiness is told by the count
        return F.when(partial("n") > 0, partial("sum"))
    if function in ("min", "max"):
        return partial(function)
    return _variance(partial("list"), function)


def compute_states(
    events: DataFrame, spec: FeatureSetSpec, first_day: dt.date, last_day: dt.date
) -> DataFrame:
    """Rows `(key, timestamp = D 00:00 UTC, aggregates)` for each day D in
    [first_day, last_day] on which a key's state differs from the day before.

    `events` is the source (before the feature set's query) for at least the `lookback_days`
    days before `first_day` up to the day before `last_day`; other rows are ignored.
    """
    key = spec.key
    first, last = (F.lit((d - EPOCH).days) for d in (first_day, last_day))
    derived = with_query(events, spec)
    day = F.datediff(F.to_date(F.col(spec.event_timestamp)), F.lit(EPOCH))
    distinct_values = list(dict.fromkeys(a.values for a in spec.aggregates))
    values = {f"v{i}": _values(*v) for i, v in enumerate(distinct_values)}
    value_of = {a: f"v{distinct_values.index(a.values)}" for a in spec.aggregates}
    needed = sorted({(value_of[a], p) for a in spec.aggregates for p in _NEEDS[a.function]})
    selected = derived.select(
        F.col(key), day.alias("day"), *(c.alias(n) for n, c in values.items())
    )
    integral = {f.name for f in selected.schema.fields if isinstance(f.dataType, IntegralType)}
    # Counts, and sums of integers, are kept as exact running sums of what enters and leaves
    # each window: cheap. Everything else is recomputed over each window's days.
    running = [f"{v}_{p}" for v, p in needed if p == "n" or (p == "sum" and v in integral)]
    # one shuffle, by key: the per-day partials and the windows below all partition by the key,
    # so Spark reuses this partitioning
    daily = (
        selected.where(F.col("day").between(first - spec.lookback_days, last - 1))
        .repartition(key)
        .groupBy(key, "day")
        .agg(*(_PARTIALS[p][0](F.col(v)).alias(f"{v}_{p}") for v, p in needed))
    )
    # Each day's partials, then the days its events can change a state, as rows without
    # partials: the next day (they enter every window) and the day after they leave each
    # window; plus the day before the range, whose state the first row is compared with. A
    # day reached from several event days repeats: a repeat sees the same windows, so it reads
    # as unchanged and is dropped, which costs less than deduplicating. E.g. with windows
    # (3, 7), 2 events on day 10 give: (10, data, n=2), (11, enter, +2 to both windows),
    # (14, leave, -2 from the 3-day window), (18, leave, -2 from the 7-day one), (first - 1,
    # baseline); a running sum up to day D of the deltas is the count of the D - w .. D - 1 days.
    windows = spec.windows

    def entry(on: Column, kind: str, window_index: int = -1) -> Column:
        return F.struct(
            on.alias("day"), F.lit(kind).alias("kind"), F.lit(window_index).alias("window")
        )

    entries = [entry(F.col("day"), "data"), entry(F.col("day") + 1, "enter")]
    entries += [entry(F.col("day") + 1 + w, "leave", i) for i, w in enumerate(windows)]
    entries.append(entry(first - 1, "baseline"))
    partials = [f"{v}_{p}" for v, p in needed]
    e = F.col("e")
    rows = (
        daily.select(key, *partials, F.explode(F.array(*entries)).alias("e"))
        .select(
            key,
            e["day"].alias("day"),
            ((e["kind"] != "data") & (e["day"] >= first - 1)).alias("_evaluated"),
            *(F.when(e["kind"] == "data", F.col(p)).alias(p) for p in partials if p not in running),
            *(
                (
                    F.when(e["kind"] == "enter", F.col(p)).otherwise(0)
                    - F.when((e["kind"] == "leave") & (e["window"] == i), F.col(p)).otherwise(0)
                ).alias(f"{p}_delta_{w}")
                for p in running
                for i, w in enumerate(windows)
            ),
        )
        # what entered or left before the range still counts in the running sums
        .where(F.col("day") <= last)
    )
    by_day = Window.partitionBy(key).orderBy("day")
    up_to = by_day.rangeBetween(Window.unboundedPreceding, 0)
    over = {w: by_day.rangeBetween(-w, -1) for w in windows}
    windowed = rows.select(
        key,
        "day",
        "_evaluated",
        *(
            (
                F.coalesce(F.sum(f"{v}_{p}_delta_{w}").over(up_to), F.lit(0))
                if f"{v}_{p}" in running
                else _PARTIALS[p][1](F.col(f"{v}_{p}"), over[w])
            ).alias(f"{v}_{p}_{w}")
            for v, p in needed
            for w in windows
        ),
    ).where(F.col("_evaluated"))
    states = windowed.select(
        key,
        "day",
        *(
            _combine(a, lambda p, a=a: F.col(f"{value_of[a]}_{p}_{a.days}"))
            .cast(a.dtype)
            .alias(a.column)
            for a in spec.aggregates
        ),
    )
    changed = F.lit(False)
    for a in spec.aggregates:
        changed = changed | ~F.col(a.column).eqNullSafe(F.lag(a.column).over(by_day))
    return (
        states.withColumn("_changed", changed)
        .where(F.col("_changed") & (F.col("day") >= first))
        .select(
            key,
            F.date_add(F.lit(EPOCH), F.col("day")).cast("timestamp").alias(TIMESTAMP),
            *(a.column for a in spec.aggregates),
        )
    )
