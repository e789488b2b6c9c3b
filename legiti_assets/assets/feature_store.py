"""Historical feature store: one daily-partitioned asset per registered feature set."""

import datetime as dt
import itertools

import dagster as dg
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from legiti_assets import changes, checks, layout, storage
from legiti_assets.assets.raw import DATED_BY
from legiti_assets.catalog import SPECS
from legiti_assets.concurrency import WRITER_POOL
from legiti_assets.engine import TIMESTAMP, DeclarationError, FeatureSetSpec, compute_states
from legiti_assets.io_managers import (
    KEY,
    PARTITION_EXPR,
    SOURCE_LOOKBACK,
    SOURCE_TABLE,
    TABLE,
    VERSION,
    add_day_metadata,
    day_previews,
    day_rows,
    run_metadata,
    write_days,
)
from legiti_assets.partitions import (
    FIRST_DAY,
    SINGLE_RUN,
    beta_parameters,
    daily_partitions,
    days_of,
    lookback,
)
from legiti_assets.resources import DataDir, SparkResource
from legiti_assets.schemas import state_schema

LOOKBACK_CHECK = "lookback_materialized"


def _check_descriptions(spec: FeatureSetSpec) -> dict[str, str]:
    """The row checks a declaration calls for; the count checks only where it declares
    count-like features."""
    found = {
        "unique_key_and_timestamp": f"At most one row per ({spec.key}, timestamp).",
        "non_null_key_and_timestamp": f"{spec.key} and timestamp are never null.",
        "dated_inside_partition": "Every row is dated at 00:00 UTC of a partition written.",
    }
    if any(a.count_like for a in spec.aggregates):
        found["non_negative_counts"] = "Every count is >= 0."
    if _growing_counts(spec):
        found["counts_grow_with_window"] = "A longer window never counts less than a shorter one."
    return found


def _growing_counts(spec: FeatureSetSpec) -> list[list[str]]:
    """Columns of each count-like (feature, function), shortest window first."""
    groups: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for a in spec.aggregates:
        if a.count_like:
            groups.setdefault((a.feature, a.function), []).append((a.days, a.column))
    return [[c for _, c in sorted(g)] for g in groups.values() if len(g) > 1]


def _violations(spec: FeatureSetSpec, days: list[dt.date]) -> dict[str, Column]:
    """Each check's condition on a row that breaks it, but `unique_key_and_timestamp`'s,
    which the write counts (`write_days`)."""
    ts = F.col(TIMESTAMP)
    found = {
        "non_null_key_and_timestamp": F.col(spec.key).isNull() | ts.isNull(),
        "dated_inside_partition": ~F.to_date(ts).between(F.lit(days[0]), F.lit(days[-1]))
        | (ts != F.to_date(ts).cast("timestamp")),
    }
    counts = [F.col(a.column) for a in spec.aggregates if a.count_like]
    if counts:
        found["non_negative_counts"] = F.least(*counts) < 0 if len(counts) > 1 else counts[0] < 0
    groups = _growing_counts(spec)
    if groups:
        shrinks = F.lit(False)
        for group in groups:
            for shorter, longer in itertools.pairwise(group):
                shrinks = shrinks | (F.col(shorter) > F.col(longer))
        found["counts_grow_with_window"] = shrinks
    return found


# With none of these broken, a day has one row per key: its keys are its rows.
_ONE_ROW_PER_KEY = (
    "unique_key_and_timestamp",
    "non_null_key_and_timestamp",
    "dated_inside_partition",
)


def _day_metadata(
    spec: FeatureSetSpec,
    states: DataFrame,
    profile: changes.DayProfile,
    violations: dict[str, int],
    days: list[dt.date],
) -> dict[dt.date, dict[str, object]]:
    """Each day's rows, keys with a state that day (unless a check found a day with a key
    twice) and, for the newest days with rows (`day_previews`), their first rows by key."""
    found = day_rows(profile, days)
    previews = day_previews(states, TIMESTAMP, [spec.key], profile.rows)
    one_per_key = all(violations[name] == 0 for name in _ONE_ROW_PER_KEY)
    for day, metadata in found.items():
        if one_per_key:
            metadata["keys"] = metadata["dagster/row_count"]
        if day in previews:
            metadata["preview"] = previews[day]
    return found


def _missing_lookback(
    data_dir: DataDir, source: str, days: list[dt.date], lookback_days: int
) -> list[str]:
    """Source days this run reads that were never ingested (their events are missing)."""
    first = max(days[0] - dt.timedelta(days=lookback_days), dt.date.fromisoformat(FIRST_DAY))
    needed = [first + dt.timedelta(days=i) for i in range((days[-1] - first).days)]
    done = set(storage.recorded_days(data_dir.resolve(layout.raw_table(source))))
    return [str(d) for d in needed if d not in done]


def _describe_aggregates(spec: FeatureSetSpec) -> str:
    functions = sorted({a.function for a in spec.aggregates})
    windows = ", ".join(f"{d} days" for d in spec.windows)
    return f"functions {', '.join(functions)} over windows of {windows}"


def freshness_policy(fresh_by: dt.time | None) -> dg.FreshnessPolicy | None:
    """Day D's states exist by `fresh_by` (UTC): a materialization between 00:00 and then.
    Dagster evaluates it per asset, not per partition (its last materialization's time)."""
    if fresh_by is None:
        return None
    return dg.FreshnessPolicy.cron(
        deadline_cron=f"{fresh_by.minute} {fresh_by.hour} * * *",
        lower_bound_delta=dt.timedelta(hours=fresh_by.hour, minutes=fresh_by.minute),
        timezone="UTC",
    )


def feature_set_asset(spec: FeatureSetSpec) -> dg.AssetsDefinition:
    """A daily asset computing `spec` from the events of its source asset."""
    # a partition reads its source's partitions by day, so both must be dated alike
    if DATED_BY.get(spec.source) != spec.event_timestamp:
        raise DeclarationError(
            f"feature set {spec.name}: source {spec.source!r} is not a raw event asset dated by "
            f"{spec.event_timestamp}; sources: "
            + ", ".join(f"{a} (dated by {t})" for a, t in DATED_BY.items())
        )
    descriptions = _check_descriptions(spec)

    @dg.asset(
        pool=WRITER_POOL,
        name=spec.name,
        description=f"{spec.description} Entity {spec.entity}, key {spec.key}, "
        f"{_describe_aggregates(spec)}.",
        group_name="feature_store",
        kinds={"spark", "deltalake", "butterfree"},
        partitions_def=daily_partitions,
        backfill_policy=SINGLE_RUN,
        # a changed declaration or query shows the asset stale in the UI
        code_version=spec.version,
        freshness_policy=freshness_policy(spec.fresh_by),
        ins={"events": dg.AssetIn(spec.source, partition_mapping=lookback(spec.lookback_days))},
        io_manager_key="delta_io_manager",
        metadata={
            PARTITION_EXPR: TIMESTAMP,
            TABLE: layout.feature_set_table(spec.entity, spec.name),
            VERSION: spec.version,
            SOURCE_TABLE: layout.raw_table(spec.source),
            "entity": spec.entity,
            KEY: spec.key,
            "source": spec.source,
            "query": spec.query or "none",
            "windows": ", ".join(f"{d} days" for d in spec.windows),
            "functions": ", ".join(sorted({a.function for a in spec.aggregates})),
            SOURCE_LOOKBACK: spec.lookback_days,
            "source_timestamp": spec.event_timestamp,
            "dagster/column_schema": state_schema(spec),
        },
        check_specs=[
            *checks.specs(spec.name, descriptions),
            dg.AssetCheckSpec(
                LOOKBACK_CHECK,
                asset=spec.name,
                description=f"Every {spec.source} day these states aggregate was materialized.",
            ),
        ],
    )
    def _feature_set(
        context: dg.AssetExecutionContext,
        data_dir: DataDir,
        spark: SparkResource,
        events: DataFrame,
    ):
        days = days_of(context.partition_time_window)
        metadata = context.assets_def.metadata_by_key[context.asset_key]
        # the states are written in the pass that computes them, and counted and checked in
        # the version written: nothing as large as the states is cached
        written = write_days(
            spark.spark_session,
            data_dir,
            spec.name,
            metadata,
            days,
            context.run_id,
            compute_states(events, spec, days[0], days[-1]),
            count_repeats=True,
        )
        version = written.version
        table = data_dir.resolve(layout.feature_set_table(spec.entity, spec.name))
        stored = storage.read(spark.spark_session, table, version).where(
            F.expr(storage.day_bounds(TIMESTAMP, days[0], days[-1]))
        )
        profile = changes.profile(stored, TIMESTAMP, counts=_violations(spec, days))
        violations = {"unique_key_and_timestamp": written.repeats or 0, **profile.counts}
        add_day_metadata(context, spec.name, _day_metadata(spec, stored, profile, violations, days))
        # the IO manager writes nothing for None: the days are written above
        yield dg.Output(
            None,
            metadata={
                **run_metadata(days, profile.rows, version),
                "path": dg.MetadataValue.path(str(table)),
            },
        )
        yield from checks.results(context, spec.name, violations)
        if dg.AssetCheckKey(dg.AssetKey(spec.name), LOOKBACK_CHECK) in (
            context.selected_asset_check_keys
        ):
            missing = _missing_lookback(data_dir, spec.source, days, spec.lookback_days)
            yield dg.AssetCheckResult(
                check_name=LOOKBACK_CHECK,
                passed=not missing,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"missing_days": len(missing), "first_missing": ", ".join(missing[:5])},
            )

    return _feature_set


with beta_parameters():
    FEATURE_SET_ASSETS = [feature_set_asset(spec) for spec in SPECS.values()]
