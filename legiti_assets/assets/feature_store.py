"""Historical feature store: one daily-partitioned asset per butterfree feature set."""

import datetime as dt
import itertools

import dagster as dg
from butterfree.transform.aggregated_feature_set import AggregatedFeatureSet
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from legiti_assets import checks, storage
from legiti_assets.catalog import SOURCES
from legiti_assets.feature_sets import user_chargebacks, user_orders
from legiti_assets.io_managers import PARTITION_EXPR, RAW_DIR, days_of
from legiti_assets.partitions import FIRST_DAY, daily_partitions, feature_lookback
from legiti_assets.resources import DataDir
from legiti_assets.rolling import (
    TIMESTAMP,
    RollingCountSpec,
    compute_rolling_counts,
    rolling_count_spec,
)

FEATURE_SET_CHECKS = {
    "unique_key_and_timestamp": "At most one row per (cpf, timestamp).",
    "non_null_key_and_timestamp": "cpf and timestamp are never null.",
    "non_negative_counts": "Every count is >= 0.",
    "counts_grow_with_window": "A longer window never counts less (3d <= 7d <= 30d).",
    "dated_inside_partition": "Every row is dated at 00:00 UTC of a partition written.",
}
LOOKBACK_CHECK = "lookback_materialized"


def column_schema(spec: RollingCountSpec) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(spec.key, "string", description=spec.key_description),
            dg.TableColumn(
                TIMESTAMP, "timestamp", description="Day (00:00 UTC) from which this state holds."
            ),
            *[dg.TableColumn(c.column, "int", description=c.description) for c in spec.counts],
        ]
    )


def _violations(spec: RollingCountSpec, days: list[dt.date]) -> dict[str, Column]:
    counts = [F.col(c.column) for c in sorted(spec.counts, key=lambda c: c.days)]
    shrinks = F.lit(False)
    for shorter, longer in itertools.pairwise(counts):
        shrinks = shrinks | (shorter > longer)
    ts = F.col(TIMESTAMP)
    return {
        "unique_key_and_timestamp": checks.duplicates_of(spec.key, TIMESTAMP),
        "non_null_key_and_timestamp": checks.count_where(F.col(spec.key).isNull() | ts.isNull()),
        "non_negative_counts": checks.count_where(F.least(*counts) < 0),
        "counts_grow_with_window": checks.count_where(shrinks),
        "dated_inside_partition": checks.count_where(
            ~F.to_date(ts).between(F.lit(days[0]), F.lit(days[-1]))
            | (ts != F.to_date(ts).cast("timestamp"))
        ),
    }


def _missing_lookback(
    data_dir: DataDir, source: str, days: list[dt.date], lookback: int
) -> list[str]:
    """Source days this run reads that were never ingested (their events are missing)."""
    first = max(days[0] - dt.timedelta(days=lookback), dt.date.fromisoformat(FIRST_DAY))
    needed = [first + dt.timedelta(days=i) for i in range((days[-1] - first).days)]
    done = set(storage.recorded_days(data_dir.resolve(f"{RAW_DIR}/{source}")))
    return [str(d) for d in needed if d not in done]


def feature_set_asset(feature_set: AggregatedFeatureSet, source: str) -> dg.AssetsDefinition:
    """A daily asset computing `feature_set` from the events of `source`."""
    spec = rolling_count_spec(feature_set)
    windows = ", ".join(f"{c.days} days" for c in spec.counts)

    @dg.asset(
        name=spec.name,
        description=f"{spec.description} Entity {spec.entity}, key {spec.key}, windows {windows}.",
        group_name="feature_store",
        kinds={"spark", "parquet", "butterfree"},
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        ins={"events": dg.AssetIn(source, partition_mapping=feature_lookback)},
        io_manager_key="feature_store_io_manager",
        metadata={
            PARTITION_EXPR: TIMESTAMP,
            "entity": spec.entity,
            "key": spec.key,
            "windows": windows,
            "source_timestamp": spec.event_timestamp,
            "dagster/column_schema": column_schema(spec),
        },
        check_specs=[
            *checks.specs(spec.name, FEATURE_SET_CHECKS),
            dg.AssetCheckSpec(
                LOOKBACK_CHECK,
                asset=spec.name,
                description=f"Every {source} day these states count was materialized.",
            ),
        ],
    )
    def _feature_set(context: dg.AssetExecutionContext, data_dir: DataDir, events: DataFrame):
        days = days_of(context.partition_time_window)
        states = compute_rolling_counts(events, spec, days[0], days[-1]).persist()
        try:
            yield dg.Output(states)
            yield from checks.evaluate(context, states, spec.name, _violations(spec, days))
        finally:
            states.unpersist()
        if dg.AssetCheckKey(dg.AssetKey(spec.name), LOOKBACK_CHECK) in (
            context.selected_asset_check_keys
        ):
            missing = _missing_lookback(data_dir, source, days, spec.lookback_days)
            yield dg.AssetCheckResult(
                check_name=LOOKBACK_CHECK,
                passed=not missing,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"missing_days": len(missing), "first_missing": ", ".join(missing[:5])},
            )

    return _feature_set


user_orders_asset = feature_set_asset(user_orders, SOURCES["user_orders"])
user_chargebacks_asset = feature_set_asset(user_chargebacks, SOURCES["user_chargebacks"])
