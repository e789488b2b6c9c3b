"""The one place where assets, checks, resources and jobs are wired together."""

import dagster as dg

from legiti_assets.assets.datasets import awesome_dataset
from legiti_assets.assets.feature_store import user_chargebacks_asset, user_orders_asset
from legiti_assets.assets.online import ONLINE_ASSETS, ONLINE_CHECKS
from legiti_assets.assets.raw import order_and_chargeback_events
from legiti_assets.io_managers import (
    DATASETS_DIR,
    FEATURE_STORE_DIR,
    RAW_DIR,
    OnlineStoreIOManager,
    ParquetIOManager,
)
from legiti_assets.resources import DataDir, OnlineStoreResource, SparkResource


def build_resources(
    data_dir: DataDir, spark: SparkResource, online_store: OnlineStoreResource | None = None
) -> dict[str, object]:
    """Resources for a data directory: the defaults here, temp dirs in the tests."""
    online_store = online_store or OnlineStoreResource(data=data_dir)
    return {
        "data_dir": data_dir,
        "spark": spark,
        "online_store": online_store,
        "online_io_manager": OnlineStoreIOManager(store=online_store),
        "raw_io_manager": ParquetIOManager(spark=spark, data=data_dir, prefix=RAW_DIR),
        "feature_store_io_manager": ParquetIOManager(
            spark=spark, data=data_dir, prefix=FEATURE_STORE_DIR
        ),
        "dataset_io_manager": ParquetIOManager(spark=spark, data=data_dir, prefix=DATASETS_DIR),
    }


ASSETS = [
    order_and_chargeback_events,
    user_orders_asset,
    user_chargebacks_asset,
    awesome_dataset,
    *ONLINE_ASSETS,
]

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=ONLINE_CHECKS,
    resources=build_resources(DataDir(), SparkResource()),
    # One process and one Spark session per run: each step in its own process would pay a JVM
    # start and could not share cached DataFrames.
    executor=dg.in_process_executor,
)
