"""Training datasets: orders enriched with point-in-time correct feature values."""

import datetime as dt

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from legiti_assets import checks, storage
from legiti_assets.assets.feature_store import column_schema
from legiti_assets.assets.raw import EVENT_SCHEMA
from legiti_assets.catalog import SOURCES, SPECS
from legiti_assets.io_managers import FEATURE_STORE_DIR, RAW_DIR
from legiti_assets.resources import DataDir
from legiti_assets.rolling import TIMESTAMP, asof_column, point_in_time_join

FEATURE_SPECS = (SPECS["user_orders"], SPECS["user_chargebacks"])
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


def last_covered_day(recorded: set[dt.date], first_event_day: dt.date | None) -> dt.date:
    """The last day D whose state, for every user, is the latest stored row at or before D.

    States only change the day after an event, so up to the first event's day they are all
    zero; after it, every day must have been materialized, without a gap, for the latest row
    to be the state: a user whose state did not change on a day has no row that day.
    """
    if first_event_day is None:
        return dt.date.max
    day = first_event_day
    while day + dt.timedelta(days=1) in recorded:
        day += dt.timedelta(days=1)
    return day


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
    data_dir: DataDir,
    order_events: DataFrame,
    user_orders: DataFrame,
    user_chargebacks: DataFrame,
):
    """Every order with its user's feature states at the order's time; the label is chargebacks."""
    covered = min(
        last_covered_day(
            set(storage.recorded_days(data_dir.resolve(f"{FEATURE_STORE_DIR}/{name}"))),
            next(iter(storage.stored_days(data_dir.resolve(f"{RAW_DIR}/{SOURCES[name]}"))), None),
        )
        for name in SPECS
    )
    on_covered_day = F.to_date("order_timestamp") <= F.lit(covered)
    n_all, n_orders = order_events.agg(F.count(F.lit(1)), F.count_if(on_covered_day)).first()
    orders = order_events.where(on_covered_day)
    joined = point_in_time_join(
        orders,
        [(FEATURE_SPECS[0], user_orders), (FEATURE_SPECS[1], user_chargebacks)],
        order_timestamp="order_timestamp",
    ).persist()
    try:
        dataset = joined.withColumnRenamed("order_timestamp", TIMESTAMP).select(
            *[c.name for c in AWESOME_DATASET_SCHEMA.columns]
        )
        yield dg.Output(
            dataset,
            metadata={
                "orders": n_orders,
                "orders_on_uncovered_days": n_all - n_orders,
                "last_covered_day": str(covered) if covered < dt.date.max else "all",
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
