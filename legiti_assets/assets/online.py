"""Online feature store: each key's latest historical state, for serving.

After every run the online store mirrors the historical one: a key's online state is its
latest stored row, and a key without rows has no state. A run over days [a, b] writes each
key's latest row of those days, and replaces what it knows is gone: a state dated in [a, b]
whose row a correction removed goes back to the key's latest earlier row, or away if there is
none. States dated after b are never touched, so an old backfill cannot regress a newer state.
"""

import datetime as dt
import math
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from legiti_assets import layout, storage
from legiti_assets.catalog import ONLINE_TABLES, SPECS, online_name
from legiti_assets.concurrency import WRITER_POOL
from legiti_assets.engine import TIMESTAMP, FeatureSetSpec
from legiti_assets.io_managers import add_day_metadata, pin, read_days
from legiti_assets.local_latest import newest_states
from legiti_assets.online import FLOAT, FeatureSetTable, Loaded, OnlineStore, Row
from legiti_assets.online.base import LOAD_COUNTS
from legiti_assets.online.values import TIMESTAMP_FIELD
from legiti_assets.partitions import SINGLE_RUN, beta_parameters, daily_partitions, days_of
from legiti_assets.resources import DataDir, OnlineStoreResource, SparkResource
from legiti_assets.schemas import state_schema
from legiti_assets.spark_compat import arrow_batches, python_rows

# Each day's metadata: how many of the day's states the store took (a key's latest of the run).
DAY_STATES_APPLIED = "day_states_applied"
# The consistency check compares every key up to this many, a deterministic sample beyond.
SAMPLE_KEYS = 10_000
MAX_REPORTED_MISMATCHES = 10


def latest_per_key(states: DataFrame, spec: FeatureSetSpec) -> DataFrame:
    """Each key's newest row (a key has one row per timestamp). Grouped, so Spark reduces
    within each file before the shuffle, where a window would shuffle and sort every row; and
    with each column taken by `max_by`, whose state is fixed-width for a number, so the
    aggregation hashes instead of sorting as a max of a struct does."""
    newest = states.groupBy(spec.key).agg(
        *(F.max_by(c, TIMESTAMP).alias(c) for c in states.columns if c != spec.key)
    )
    return newest.select(*states.columns)


def midnight(day: dt.date) -> dt.datetime:
    """The timestamp of a day's states."""
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def stored_states(
    spark: SparkSession,
    data_dir: DataDir,
    spec: FeatureSetSpec,
    before: dt.date | None = None,
    as_of: int | None = None,
) -> DataFrame:
    """Every stored row of a feature set, or those of the days before `before`, at table
    version `as_of` (default: the latest)."""
    table = data_dir.resolve(layout.feature_set_table(spec.entity, spec.name))
    days = [d for d in sorted(storage.recorded(table, as_of)) if before is None or d < before]
    return read_days(
        spark, spec.name, table, days, state_schema(spec), TIMESTAMP, spec.version, as_of
    )


def _rows(states: DataFrame, table: FeatureSetTable) -> Iterator[Row]:
    # epoch seconds: collected Spark timestamps would be in the driver's local time zone
    selected = states.select(table.key, F.col(TIMESTAMP).cast("long"), *table.feature_columns)
    for key, seconds, *values in python_rows(selected):
        yield key, dt.datetime.fromtimestamp(seconds, tz=dt.UTC), values


# What the executors writing a store send back: a few rows of counts per partition.
_LOAD_COUNTS_DDL = ", ".join(f"`{name}` bigint" for name in LOAD_COUNTS.names)


def load_latest(
    store: OnlineStore,
    table: FeatureSetTable,
    latest: DataFrame,
    replace_until: dt.datetime | None = None,
) -> Loaded:
    """Write `latest` (at most one row per key) into the store by its rule (`write_latest`).

    A store the executors can reach (Redis) is written by them, each partition through its own
    connection; only counts per timestamp come back. A local file (SQLite) is loaded here in
    bulk, from Arrow batches.
    """
    # epoch seconds: Spark's cast of a timestamp to long floors, as `to_epoch_seconds` does
    selected = latest.select(
        table.key, F.col(TIMESTAMP).cast("long").alias(TIMESTAMP_FIELD), *table.feature_columns
    )
    writer = store.partition_writer(table, replace_until=replace_until)
    if writer is None:
        return store.load(table, arrow_batches(selected), replace_until=replace_until)
    # in timestamp then key order, each key joins the store's index of keys by timestamp (a
    # Redis sorted set) next to the one before, whose nodes the server still has in cache
    ordered = selected.sortWithinPartitions(TIMESTAMP_FIELD, table.key)
    return Loaded.of(python_rows(ordered.mapInArrow(writer, _LOAD_COUNTS_DDL)))


def keys_not_in(keys: list[str], states: DataFrame, spec: FeatureSetSpec) -> list[str]:
    """Those of `keys` (in order) that no row of `states` has."""
    distinct = states.select(spec.key).distinct()
    present = [b.column(0).cast(pa.string()) for b in arrow_batches(distinct)]
    if not present:
        return keys
    candidates = pa.array(keys, pa.string())
    found = pc.is_in(candidates, value_set=pa.concat_arrays(present))
    return candidates.filter(pc.invert(found)).to_pylist()


@dataclass(frozen=True)
class Mirrored:
    """What `mirror_days` did: the run's counters, and how many states of each day the store
    took."""

    totals: dict[str, int]
    applied_per_day: dict[dt.date, int]


def mirror_days(
    spark: SparkSession,
    store: OnlineStore,
    data_dir: DataDir,
    spec: FeatureSetSpec,
    states: DataFrame,
    days: list[dt.date],
    as_of: int | None = None,
) -> Mirrored:
    """Make the store hold, for every key whose state is or was dated in `days`, its latest
    stored row; `states` are the stored rows of `days` (consecutive), at table version `as_of`.

    A store only this process can write (SQLite) takes each key's newest row as DuckDB reads
    it here from the table's files, where it can (`local_latest`); Spark computes them for
    any other store, and where DuckDB cannot read the table.
    """
    table = ONLINE_TABLES[spec.name]
    since, until = midnight(days[0]), midnight(days[-1])
    # before writing: afterwards every key of the range is dated in it
    dated = sorted(store.keys(table, since, until))
    # states the rewritten days no longer hold (none, unless the store has states in the range)
    orphans = keys_not_in(dated, states, spec) if dated else []
    history = data_dir.resolve(layout.feature_set_table(spec.entity, spec.name))
    newest = None
    if store.partition_writer(table) is None:  # a store only this process writes (a file)
        columns = list(table.feature_columns)
        newest = newest_states(history, spec, days[0], days[-1], columns, as_of)
    if newest is not None:
        loaded = store.load(table, newest, replace_until=until)
    else:
        loaded = load_latest(store, table, latest_per_key(states, spec), replace_until=until)
    restored = removed = 0
    if orphans:
        # back to each orphan's latest earlier row
        keys = spark.createDataFrame([(k,) for k in orphans], f"`{spec.key}` string")
        before = stored_states(spark, data_dir, spec, days[0], as_of).join(
            keys, spec.key, "left_semi"
        )
        earlier = load_latest(store, table, latest_per_key(before, spec), replace_until=until)
        restored = earlier.total_applied
        # the restored states are dated before the range: only the orphans without an earlier
        # row are still in it
        removed = store.delete(table, orphans, since=since, until=until)
    offered, applied = Counter[dt.date](), Counter[dt.date]()
    for ts, n in loaded.offered.items():
        offered[ts.date()] += n
        applied[ts.date()] += loaded.applied[ts]
    return Mirrored(
        totals={
            "states_offered": offered.total(),
            "states_applied": applied.total(),
            "keys_restored": restored,
            "keys_removed": removed,
        },
        applied_per_day={day: applied[day] for day in offered},
    )


def online_asset(spec: FeatureSetSpec) -> dg.AssetsDefinition:
    @dg.asset(
        pool=WRITER_POOL,
        name=online_name(spec.name),
        description=f"Latest {spec.name} state of each {spec.entity}, for low-latency reads.",
        group_name="online_store",
        kinds={"spark", "sqlite", "redis"},
        partitions_def=daily_partitions,
        backfill_policy=SINGLE_RUN,
        ins={"states": dg.AssetIn(spec.name)},
        # the store may be briefly unreachable; writes are idempotent, so retrying is safe
        retry_policy=dg.RetryPolicy(max_retries=3, delay=1, backoff=dg.Backoff.EXPONENTIAL),
        code_version=spec.version,
        metadata={
            "feature_set": spec.name,
            "entity": spec.entity,
            "key": spec.key,
            "dagster/column_schema": state_schema(spec),
        },
    )
    def _online(
        context: dg.AssetExecutionContext,
        states: DataFrame,
        spark: SparkResource,
        data_dir: DataDir,
        online_store: OnlineStoreResource,
    ) -> dg.MaterializeResult:
        days = days_of(context.partition_time_window)
        table = ONLINE_TABLES[spec.name]
        history = data_dir.resolve(layout.feature_set_table(spec.entity, spec.name))
        # the states were read at this version of the history: its tokens are what is mirrored
        as_of = pin(context.run_id, history)
        with online_store.open() as store:
            wanted = set(days)
            tokens = {
                str(day): record.token
                for day, record in storage.recorded(history, as_of).items()
                if day in wanted
            }
            done = mirror_days(spark.spark_session, store, data_dir, spec, states, days, as_of)
            store.record_mirrored(table, tokens)
            latest = store.latest_timestamp(table)
            keys = store.count(table)
        add_day_metadata(
            context,
            online_name(spec.name),
            {day: {DAY_STATES_APPLIED: done.applied_per_day.get(day, 0)} for day in days},
        )
        # the run's totals, in every day's event (`legiti_assets.update` adds them up)
        return dg.MaterializeResult(
            metadata={
                **done.totals,
                "keys_reconciled": done.totals["keys_restored"] + done.totals["keys_removed"],
                "store": online_store.redacted_url(),
                "store_keys": keys,
                "store_latest_timestamp": str(latest),
            }
        )

    return _online


def freshness_check(spec: FeatureSetSpec) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=online_name(spec.name),
        name="fresh",
        description="The online store holds the newest state of the historical store.",
    )
    def _fresh(online_store: OnlineStoreResource, data_dir: DataDir) -> dg.AssetCheckResult:
        stored = storage.newest(
            data_dir.resolve(layout.feature_set_table(spec.entity, spec.name)), TIMESTAMP
        )
        with online_store.open() as store:
            latest = store.latest_timestamp(ONLINE_TABLES[spec.name])
        newest = stored.date() if stored else None
        online_day = latest.date() if latest else None
        return dg.AssetCheckResult(
            passed=newest is None or (online_day is not None and online_day >= newest),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"historical_newest": str(newest), "online_newest": str(online_day)},
        )

    return _fresh


def sampled(key: str, every: int) -> bool:
    """The deterministic sample: the same keys on every run, in Python and in Spark."""
    return zlib.crc32(key.encode()) % every == 0


def _expected(value: object, kind: str) -> int | float | None:
    """A stored value as the online store reads it back (NaN is null there)."""
    if value is None or value != value:
        return None
    if kind == FLOAT:
        return float(value) + 0.0
    return int(value)  # type: ignore[call-overload]


def mismatches(
    spark: SparkSession, store: OnlineStore, data_dir: DataDir, spec: FeatureSetSpec
) -> tuple[int, int, list[str]]:
    """(keys compared, sampling step, mismatches) between the online store and each key's
    latest stored row; every key when there are at most `SAMPLE_KEYS`."""
    table = ONLINE_TABLES[spec.name]
    online_keys = store.keys(table)
    states = stored_states(spark, data_dir, spec)
    if len(online_keys) > SAMPLE_KEYS:
        every = math.ceil(len(online_keys) / SAMPLE_KEYS)
    else:
        # a small online store may still miss the keys of a big history: one more than the
        # sample's size tells which
        latest = list(_rows(latest_per_key(states, spec).limit(SAMPLE_KEYS + 1), table))
        every = 1
        if len(latest) > SAMPLE_KEYS:
            every = math.ceil(states.select(spec.key).distinct().count() / SAMPLE_KEYS)
    if every > 1:
        states = states.where(F.crc32(F.col(spec.key).cast("binary")) % every == 0)
        latest = list(_rows(latest_per_key(states, spec), table))
    history = {row[0]: (row[1], row[2]) for row in latest}
    keys = sorted({k for k in online_keys if sampled(k, every)} | set(history))
    online = store.get_features(spec.entity, keys, [table])
    found = []
    for key in keys:
        got = online[key]
        got_ts = got[table.timestamp_feature]
        if key not in history:
            if got_ts is not None:
                found.append(f"{key}: online state of {got_ts} but no stored row")
            continue
        ts, values = history[key]
        expected = {
            column: _expected(value, kind)
            for column, kind, value in zip(
                table.feature_columns, table.feature_types, values, strict=True
            )
        }
        actual = {column: got[column] for column in table.feature_columns}
        if got_ts != ts or actual != expected:
            found.append(
                f"{key}: online {got_ts} {actual}, latest stored row {ts} {expected}"
                if got_ts is not None
                else f"{key}: no online state, latest stored row {ts} {expected}"
            )
    return len(keys), every, found


def consistency_check(spec: FeatureSetSpec) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=online_name(spec.name),
        name="online_matches_historical",
        description="Each key's online state is its latest row in the historical store, and "
        f"a key without rows has none (every key up to {SAMPLE_KEYS:,}, a fixed sample beyond).",
    )
    def _matches(
        spark: SparkResource, online_store: OnlineStoreResource, data_dir: DataDir
    ) -> dg.AssetCheckResult:
        with online_store.open() as store:
            compared, every, found = mismatches(spark.spark_session, store, data_dir, spec)
        return dg.AssetCheckResult(
            passed=not found,
            metadata={
                "keys_compared": compared,
                "sampled": f"1 key in {every}" if every > 1 else "every key",
                "mismatches": len(found),
                "first_mismatches": "\n".join(found[:MAX_REPORTED_MISMATCHES]) or "none",
            },
        )

    return _matches


with beta_parameters():
    ONLINE_ASSETS = [online_asset(spec) for spec in SPECS.values()]
ONLINE_CHECKS = [
    check for spec in SPECS.values() for check in (freshness_check(spec), consistency_check(spec))
]
