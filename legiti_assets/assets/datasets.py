"""Training datasets: orders enriched with point-in-time correct feature values."""

import dagster as dg
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from legiti_assets import checks
from legiti_assets.assets.feature_store import column_schema
from legiti_assets.assets.raw import EVENT_SCHEMA
from legiti_assets.feature_sets import user_chargebacks, user_orders
from legiti_assets.resources import SparkResource
from legiti_assets.rolling import TIMESTAMP, asof_column, point_in_time_join, rolling_count_spec

FEATURE_SPECS = (rolling_count_spec(user_orders), rolling_count_spec(user_chargebacks))
_event_columns = {c.name: c for c in EVENT_SCHEMA.columns}
AWESOME_DATASET_SCHEMA = dg.TableSchema(
    columns=[
        _event_columns["order_id"],
        dg.TableColumn(TIMESTAMP, "timestamp", description="When the order was placed."),
        dg.TableColumn(
            "chargeback_timestamp",
            "timestamp",
            description="The label: when a chargeback was reported; null when none is known.",
        ),
        _event_columns["cpf"],
        *[column for spec in FEATURE_SPECS for column in column_schema(spec).columns[2:]],
    ]
)
DATASET_CHECKS = {
    "one_row_per_order": "No order_id appears twice.",
    "point_in_time": "No feature value comes from a state dated after its order.",
}


def covered_orders(spark: SparkSession, orders: DataFrame, days: set[str]) -> DataFrame:
    """Orders placed on `days` (YYYY-MM-DD): the days every feature set has materialized."""
    covered = spark.createDataFrame([(d,) for d in sorted(days)], "day string")
    day = F.date_format("order_timestamp", "yyyy-MM-dd")
    return orders.join(F.broadcast(covered), day == F.col("day"), "left_semi")


@dg.asset(
    group_name="datasets",
    kinds={"spark", "parquet"},
    ins={name: dg.AssetIn(name) for name in ("order_events", "user_orders", "user_chargebacks")},
    io_manager_key="dataset_io_manager",
    metadata={"dagster/column_schema": AWESOME_DATASET_SCHEMA},
    check_specs=[
        *checks.specs("awesome_dataset", DATASET_CHECKS),
        dg.AssetCheckSpec(
            "row_count_equals_orders",
            asset="awesome_dataset",
            description="As many rows as orders on days every feature set covers.",
            blocking=True,
        ),
    ],
)
def awesome_dataset(
    context: dg.AssetExecutionContext,
    spark: SparkResource,
    order_events: DataFrame,
    user_orders: DataFrame,
    user_chargebacks: DataFrame,
):
    """Every order with its user's feature states at the order's time; the label is chargebacks."""
    materialized = [
        context.instance.get_materialized_partitions(dg.AssetKey(spec.name))
        for spec in FEATURE_SPECS
    ]
    days = set.intersection(*map(set, materialized))
    orders = covered_orders(spark.get_session(), order_events, days).persist()
    joined = point_in_time_join(
        orders,
        [(FEATURE_SPECS[0], user_orders), (FEATURE_SPECS[1], user_chargebacks)],
        order_timestamp="order_timestamp",
    ).persist()
    try:
        n_orders, n_all = orders.count(), order_events.count()
        dataset = joined.withColumnRenamed("order_timestamp", TIMESTAMP).select(
            *[c.name for c in AWESOME_DATASET_SCHEMA.columns]
        )
        yield dg.Output(
            dataset,
            metadata={
                "orders": n_orders,
                "orders_on_uncovered_days": n_all - n_orders,
                "feature_days_covered": len(days),
            },
        )
        late = F.lit(False)
        for spec in FEATURE_SPECS:
            late = late | (F.col(asof_column(spec.name)) > F.col("order_timestamp"))
        yield from checks.evaluate(
            context,
            joined,
            "awesome_dataset",
            {
                "one_row_per_order": checks.duplicates_of("order_id"),
                "point_in_time": checks.count_where(late),
                "row_count_equals_orders": F.abs(F.count(F.lit(1)) - F.lit(n_orders)),
            },
        )
    finally:
        joined.unpersist()
        orders.unpersist()
