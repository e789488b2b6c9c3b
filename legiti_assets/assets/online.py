"""Online feature store: each user's latest state of each feature set, for serving."""

import dagster as dg
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from legiti_assets import layout, storage
from legiti_assets.catalog import ONLINE_TABLES, SPECS
from legiti_assets.engine import TIMESTAMP, FeatureSetSpec
from legiti_assets.partitions import daily_partitions
from legiti_assets.resources import DataDir, OnlineStoreResource
from legiti_assets.schemas import state_schema


def latest_per_key(states: DataFrame, spec: FeatureSetSpec) -> DataFrame:
    newest_first = Window.partitionBy(spec.key).orderBy(F.col(TIMESTAMP).desc())
    return (
        states.withColumn("_rank", F.row_number().over(newest_first))
        .where(F.col("_rank") == 1)
        .drop("_rank")
    )


def online_asset(spec: FeatureSetSpec) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{spec.name}_online",
        description=f"Latest {spec.name} state of each {spec.entity}, for low-latency reads.",
        group_name="online_store",
        kinds={"spark", "sqlite", "redis"},
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        ins={"states": dg.AssetIn(spec.name)},
        io_manager_key="online_io_manager",
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
    def _online(states: DataFrame) -> DataFrame:
        return latest_per_key(states, spec)

    return _online


def freshness_check(spec: FeatureSetSpec) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=f"{spec.name}_online",
        name="fresh",
        description="The online store holds the newest state of the historical store.",
    )
    def _fresh(online_store: OnlineStoreResource, data_dir: DataDir) -> dg.AssetCheckResult:
        days = storage.stored_days(
            data_dir.resolve(layout.feature_set_table(spec.entity, spec.name))
        )
        with online_store.open() as store:
            latest = store.latest_timestamp(ONLINE_TABLES[spec.name])
        newest = days[-1] if days else None
        online_day = latest.date() if latest else None
        return dg.AssetCheckResult(
            passed=newest is None or (online_day is not None and online_day >= newest),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"historical_newest": str(newest), "online_newest": str(online_day)},
        )

    return _fresh


ONLINE_ASSETS = [online_asset(spec) for spec in SPECS.values()]
ONLINE_CHECKS = [freshness_check(spec) for spec in SPECS.values()]
