"""Point-in-time retrieval into pandas, without Spark: `deltalake` reads the stored states at
the snapshot's versions and DuckDB's ASOF join matches each spine row with its state.

The contract is `pit_join.get_historical_features`'s, and so are the snapshot, the coverage
check and its message; the output equals that path's `toPandas()`, except that it keeps the
spine's rows in their order and with their index (Spark's join does not keep an order).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from legiti_assets import layout, storage
from legiti_assets.engine import TIMESTAMP, FeatureSetSpec
from legiti_assets.io_managers import check_stored
from legiti_assets.pit_join import (
    asof_column,
    covered_until,
    late_rows_message,
    resolve_request,
    snapshot,
    spine_key,
)
from legiti_assets.schemas import state_schema

# Each declared (Spark) aggregate type as Arrow and DuckDB name it.
_ARROW_TYPES = {
    "int": pa.int32(),
    "bigint": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
}
_DUCKDB_TYPES = {"int": "INTEGER", "bigint": "BIGINT", "float": "FLOAT", "double": "DOUBLE"}
# Naive UTC on both sides of the join: DuckDB would compare zoned instants in its session's zone.
_INSTANT = pa.timestamp("us")


def get_historical_features_pandas(
    spine: pd.DataFrame,
    feature_sets: Sequence[str],
    *,
    timestamp: str,
    data_dir: str | Path | None = None,
    as_of: dt.datetime | None = None,
) -> pd.DataFrame:
    """`pit_join.get_historical_features` for a pandas spine, with no JVM: the spine's columns,
    then for each feature set `<name>__asof` and its aggregates, one row per spine row in the
    spine's order and with its index.

    Naive spine timestamps and `as_of` are UTC. The `__asof` columns are naive UTC, as Spark's
    `toPandas()` gives them, or UTC-aware if the spine's timestamp column is zone-aware.
    Integer aggregates are int32/int64, or float64 when a value is missing, as `toPandas()`.
    """
    root, specs = resolve_request(feature_sets, data_dir)
    key = spine_key(specs, list(spine.columns), timestamp)
    instants = pd.to_datetime(spine[timestamp], utc=True).dt.tz_localize(None)
    versions = snapshot(root, specs, as_of)
    covered = covered_until(root, specs, versions)
    if covered < dt.date.max:
        late = int((instants >= pd.Timestamp(covered + dt.timedelta(days=1))).sum())
        if late:
            raise ValueError(late_rows_message(late, covered, feature_sets))
    states = [
        read_states(root, s, versions[root / layout.feature_set_table(s.entity, s.name)])
        for s in specs
    ]
    rows = pa.table(
        {
            "row": pa.array(range(len(spine)), pa.int64()),
            "key": pa.array(spine[key], from_pandas=True).cast(pa.string()),
            # Spark keeps microseconds, truncating
            "at": pc.cast(pa.array(instants, from_pandas=True), _INSTANT, safe=False),
        }
    )
    features = _asof_join(rows, list(zip(specs, states, strict=True))).to_pandas()
    if isinstance(spine[timestamp].dtype, pd.DatetimeTZDtype):
        for s in specs:
            features[asof_column(s.name)] = features[asof_column(s.name)].dt.tz_localize("UTC")
    joined = pd.concat([spine.reset_index(drop=True), features], axis=1)
    return joined.set_axis(spine.index)


def read_states(root: Path, spec: FeatureSetSpec, version: int | None) -> pa.Table:
    """Every stored state row of a feature set at table `version` (None: no table yet), with
    the checks Spark's `pit_join.read_states` makes; timestamps naive UTC."""
    table = root / layout.feature_set_table(spec.entity, spec.name)
    days = [] if version is None else storage.stored_days(table, version)
    if not days:
        return _state_schema(spec).empty_table()
    check_stored(spec.name, table, state_schema(spec), days, spec.version, version)
    at = ds.field(TIMESTAMP)
    # the bounds prune files by their statistics; the day list keeps only the stored days
    in_days = (
        (at >= _midnight(days[0]))
        & (at < _midnight(days[-1] + dt.timedelta(days=1)))
        & at.cast(pa.date32()).isin(pa.array(days, pa.date32()))
    )
    states = storage.log(table, version).to_pyarrow_table(columns=spec.columns, filters=in_days)
    return states.cast(_state_schema(spec))


def _asof_join(rows: pa.Table, states: list[tuple[FeatureSetSpec, pa.Table]]) -> pa.Table:
    """For each row of `rows` (row, key, at), in `row` order: each feature set's as-of time and
    aggregates, from its latest state with the same key dated at or before `at`."""
    values: list[str] = []
    joins: list[str] = []
    with duckdb.connect() as con:
        con.register("spine", rows)
        for i, (spec, table) in enumerate(states):
            s = f"s{i}"
            con.register(s, table)
            joins.append(
                f"ASOF LEFT JOIN {s} ON spine.key = {s}.{_q(spec.key)} "
                f"AND spine.at >= {s}.{_q(TIMESTAMP)}"
            )
            values.append(f"{s}.{_q(TIMESTAMP)} AS {_q(asof_column(spec.name))}")
            for a in spec.aggregates:
                # the state's own timestamp is never null: null means no state matched
                no_state = "0" if a.count_like else "NULL"
                values.append(
                    f"CAST(CASE WHEN {s}.{_q(TIMESTAMP)} IS NULL THEN {no_state} "
                    f"ELSE {s}.{_q(a.column)} END AS {_DUCKDB_TYPES[a.dtype]}) AS {_q(a.column)}"
                )
        query = f"SELECT {', '.join(values)} FROM spine {' '.join(joins)} ORDER BY spine.row"
        return con.sql(query).to_arrow_table()


def _state_schema(spec: FeatureSetSpec) -> pa.Schema:
    return pa.schema(
        [
            (spec.key, pa.string()),
            (TIMESTAMP, _INSTANT),
            *((a.column, _ARROW_TYPES[a.dtype]) for a in spec.aggregates),
        ]
    )


def _midnight(day: dt.date) -> pa.Scalar:
    return pa.scalar(dt.datetime.combine(day, dt.time(), dt.UTC), pa.timestamp("us", "UTC"))


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
