"""The one place where assets, checks, resources and jobs are wired together."""

import dagster as dg

from legiti_assets.assets.datasets import TRAINING_SET_ASSETS
from legiti_assets.assets.feature_store import FEATURE_SET_ASSETS
from legiti_assets.assets.online import ONLINE_ASSETS, ONLINE_CHECKS
from legiti_assets.assets.raw import order_and_chargeback_events
from legiti_assets.automation import daily_schedule, landing_sensor
from legiti_assets.io_managers import DeltaIOManager
from legiti_assets.jobs import JOBS
from legiti_assets.resources import DataDir, OnlineStoreResource, SparkResource
from legiti_assets.vacuum import vacuum_job, vacuum_schedule


def build_resources(
    data_dir: DataDir, spark: SparkResource, online_store: OnlineStoreResource | None = None
) -> dict[str, object]:
    """Resources for a data directory: the defaults here, temp dirs in the tests."""
    online_store = online_store or OnlineStoreResource(data=data_dir)
    return {
        "data_dir": data_dir,
        "spark": spark,
        "online_store": online_store,
        "delta_io_manager": DeltaIOManager(spark=spark, data=data_dir),
    }


ASSETS = [order_and_chargeback_events, *FEATURE_SET_ASSETS, *TRAINING_SET_ASSETS, *ONLINE_ASSETS]


def definitions(resources: dict[str, object]) -> dg.Definitions:
    """Everything, bound to `resources`: the defaults below, or temp dirs (tests, benchmarks);
    `make awesome-dataset` and `make update` run these jobs."""
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=ONLINE_CHECKS,
        jobs=[*JOBS, vacuum_job],
        schedules=[daily_schedule, vacuum_schedule],
        sensors=[landing_sensor],
        resources=resources,
        # One process and one Spark session per run: each step in its own process would pay a
        # JVM start and could not share cached DataFrames.
        executor=dg.in_process_executor,
    )


defs = definitions(build_resources(DataDir(), SparkResource()))
