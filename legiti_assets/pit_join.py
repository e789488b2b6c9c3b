"""Point-in-time retrieval: each row of a spine with every feature set's state at its time.

`get_historical_features` is the public entry, as Feast's is: any spine (a DataFrame with the
feature sets' key, a timestamp and any other columns) and any registered feature sets.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from legiti_assets import layout, storage
from legiti_assets.engine import TIMESTAMP, FeatureSetSpec
from legiti_assets.io_managers import read_days
from legiti_assets.schemas import spark_ddl, state_schema


def asof_column(feature_set: str) -> str:
    """Column holding the timestamp of the feature-set row a spine row was joined with."""
    return f"{feature_set}__asof"


def point_in_time_join(
    spine: DataFrame,
    feature_sets: Sequence[tuple[FeatureSetSpec, DataFrame]],
    *,
    timestamp: str,
) -> DataFrame:
    """Each spine row with, for each feature set independently, the values of that set's latest
    state row for the same key with `timestamp <= spine timestamp`, plus that row's timestamp in
    `asof_column(name)`. Without such a row a key has no events yet: count-like features read
    0, the others null.

    One sort per key of spine rows and states together, instead of a range join of all states
    against all spine rows.
    """
    key = spine_key([spec for spec, _ in feature_sets], spine.columns, timestamp)
    kind, at = "_kind", "_at"
    # states sort before spine rows at the same instant: a state dated exactly at a row applies.
    # Each state travels as one struct, so a state's own nulls are carried, not skipped over.
    parts = [spine.withColumn(at, F.col(timestamp)).withColumn(kind, F.lit(1))]
    for spec, states in feature_sets:
        parts.append(
            states.select(
                spec.key,
                F.col(TIMESTAMP).alias(at),
                F.lit(0).alias(kind),
                F.struct(
                    F.col(TIMESTAMP).alias(asof_column(spec.name)),
                    *[a.column for a in spec.aggregates],
                ).alias(_state(spec)),
            )
        )
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part, allowMissingColumns=True)
    history = Window.partitionBy(key).orderBy(at, kind).rowsBetween(Window.unboundedPreceding, 0)
    carried = union.select(
        *spine.columns,
        kind,
        *[
            F.last(_state(spec), ignorenulls=True).over(history).alias(_state(spec))
            for spec, _ in feature_sets
        ],
    ).where(F.col(kind) == 1)
    values: list[Column] = []
    for spec, _ in feature_sets:
        state = F.col(_state(spec))
        values.append(state[asof_column(spec.name)].alias(asof_column(spec.name)))
        for a in spec.aggregates:
            no_state = F.lit(0) if a.count_like else F.lit(None)
            values.append(
                F.when(state.isNull(), no_state)
                .otherwise(state[a.column])
                .cast(a.dtype)
                .alias(a.column)
            )
    return carried.select(*spine.columns, *values)


def spine_key(specs: Sequence[FeatureSetSpec], columns: Sequence[str], timestamp: str) -> str:
    """The key the feature sets share, checked present in a spine of `columns` with its
    `timestamp`; raises otherwise."""
    keys = {spec.key for spec in specs}
    if len(keys) != 1:
        raise ValueError(f"feature sets to join must share one key, got {sorted(keys)}")
    (key,) = keys
    missing = {key, timestamp} - set(columns)
    if missing:
        raise ValueError(f"the spine lacks the columns {sorted(missing)}")
    return key


def _state(spec: FeatureSetSpec) -> str:
    return f"_state_{spec.name}"


def last_covered_day(recorded: set[dt.date], first_event_day: dt.date | None) -> dt.date:
    """The last day D whose state, for every key, is the latest stored row at or before D.

    States only change the day after an event, so up to the first event's day they are all
    empty; after it, every day must have been materialized, without a gap, for the latest row
    to be the state: a key whose state did not change on a day has no row that day.
    """
    if first_event_day is None:
        return dt.date.max
    day = first_event_day
    while day + dt.timedelta(days=1) in recorded:
        day += dt.timedelta(days=1)
    return day


Versions = dict[Path, int | None]


def snapshot(
    data_dir: Path, specs: Sequence[FeatureSetSpec], as_of: dt.datetime | None
) -> Versions:
    """The version of each table `specs` are read from (their histories and sources) as the
    store knew it at instant `as_of` (naive: UTC), or the latest now; None: no table yet."""
    tables = [data_dir / layout.feature_set_table(s.entity, s.name) for s in specs]
    tables += [data_dir / layout.raw_table(s.source) for s in specs]
    if as_of is None:
        return {t: storage.current_version(t) for t in tables}
    return {t: storage.version_at(t, as_of) for t in tables}


def covered_until(
    data_dir: Path, specs: Sequence[FeatureSetSpec], versions: Versions | None = None
) -> dt.date:
    """The last day on which every one of `specs` has a state for every key (in the tables at
    `versions`, default the latest)."""
    versions = versions or {}
    covered = dt.date.max
    for s in specs:
        history = data_dir / layout.feature_set_table(s.entity, s.name)
        source = data_dir / layout.raw_table(s.source)
        if versions.get(history, 0) is None:
            recorded: set[dt.date] = set()
        else:
            recorded = set(storage.recorded(history, versions.get(history)))
        first = None
        if versions.get(source, 0) is not None:
            first = next(iter(storage.stored_days(source, versions.get(source))), None)
        covered = min(covered, last_covered_day(recorded, first))
    return covered


def read_states(
    spark: SparkSession, data_dir: Path, spec: FeatureSetSpec, as_of: int | None = None
) -> DataFrame:
    """Every stored state row of a feature set at table version `as_of` (default: the latest;
    empty if none is stored yet)."""
    table = data_dir / layout.feature_set_table(spec.entity, spec.name)
    if as_of is None:
        as_of = storage.current_version(table)
    return read_days(
        spark,
        spec.name,
        table,
        storage.stored_days(table, as_of) if as_of is not None else [],
        state_schema(spec),
        TIMESTAMP,
        spec.version,
        as_of,
    ).select(*spec.columns)


def get_historical_features(
    spine: DataFrame,
    feature_sets: Sequence[str],
    *,
    timestamp: str,
    data_dir: str | Path | None = None,
    as_of: dt.datetime | None = None,
) -> DataFrame:
    """The spine's rows, each with the state of every named feature set at `timestamp`, read
    from the historical store under `data_dir` (default: `$LEGITI_DATA_DIR`, else `data`) as
    it was at instant `as_of` (naive: UTC; default: now), through Delta time travel.

    Point in time correct: a row sees the state of its day, which counts events strictly before
    that day's 00:00 UTC. Count-like features without a state read 0, others null. Raises if a
    spine row is dated after the last day every feature set's stored history covers (its state
    would be stale).
    """
    root, specs = resolve_request(feature_sets, data_dir)
    versions = snapshot(root, specs, as_of)
    covered = covered_until(root, specs, versions)
    if covered < dt.date.max:
        late = spine.where(F.to_date(timestamp) > F.lit(covered)).count()
        if late:
            raise ValueError(late_rows_message(late, covered, feature_sets))
    spark = spine.sparkSession
    states = []
    for s in specs:
        version = versions[root / layout.feature_set_table(s.entity, s.name)]
        if version is None:  # no history yet at that instant
            states.append((s, spark.createDataFrame([], spark_ddl(state_schema(s)))))
        else:
            states.append((s, read_states(spark, root, s, version)))
    return point_in_time_join(spine, states, timestamp=timestamp)


def resolve_request(
    feature_sets: Sequence[str], data_dir: str | Path | None
) -> tuple[Path, list[FeatureSetSpec]]:
    """The data directory and the registered feature sets a retrieval names; raises on an
    unknown name."""
    from legiti_assets.catalog import SPECS
    from legiti_assets.resources import DataDir

    unknown = [n for n in feature_sets if n not in SPECS]
    if unknown:
        raise ValueError(f"unknown feature sets {unknown}; registered: {sorted(SPECS)}")
    root = DataDir(path=None if data_dir is None else str(data_dir)).root
    return root, [SPECS[n] for n in feature_sets]


def late_rows_message(late: int, covered: dt.date, feature_sets: Sequence[str]) -> str:
    return (
        f"{late} spine row(s) are dated after {covered}, the last day on which every one "
        f"of {', '.join(feature_sets)} has a state for every key: materialize the days "
        "after it, or keep the spine to days up to it"
    )
