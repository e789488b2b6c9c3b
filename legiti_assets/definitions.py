"""The one place where assets, checks, resources and jobs are wired together."""

import dagster as dg

from legiti_assets.assets.datasets import awesome_dataset
from legiti_assets.assets.feature_store import user_chargebacks_asset, user_orders_asset
from legiti_assets.assets.raw import order_and_chargeback_events
from legiti_assets.io_managers import ParquetIOManager
from legiti_assets.resources import DataDir, SparkResource


def build_resources(data_dir: DataDir, spark: SparkResource) -> dict[str, object]:
    """Resources for a data directory: the defaults here, temp dirs in the tests."""
    return {
        "data_dir": data_dir,
        "spark": spark,
        "raw_io_manager": ParquetIOManager(spark=spark, data=data_dir, prefix="raw"),
        "feature_store_io_manager": ParquetIOManager(
            spark=spark, data=data_dir, prefix="feature_store/historical/user"
        ),
        "dataset_io_manager": ParquetIOManager(spark=spark, data=data_dir, prefix="datasets"),
    }


ASSETS = [order_and_chargeback_events, user_orders_asset, user_chargebacks_asset, awesome_dataset]

defs = dg.Definitions(
    assets=ASSETS,
    resources=build_resources(DataDir(), SparkResource()),
    # One process and one Spark session per run: each step in its own process would pay a JVM
    # start and could not share cached DataFrames.
    executor=dg.in_process_executor,
)
