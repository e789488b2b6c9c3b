"""Raw order and chargeback events, ingested from the landing CSV into daily partitions."""

import datetime as dt

import dagster as dg
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from legiti_assets import changes, checks, layout
from legiti_assets.concurrency import WRITER_POOL
from legiti_assets.io_managers import (
    FINGERPRINTED,
    PARTITION_EXPR,
    TABLE,
    add_day_metadata,
    day_rows,
)
from legiti_assets.landing import LandingFileError, landing_files, read_landing_dir, release
from legiti_assets.partitions import (
    FIRST_DAY,
    SINGLE_RUN,
    beta_parameters,
    daily_partitions,
    days_of,
)
from legiti_assets.resources import DataDir, SparkResource

EVENT_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("order_id", "string", description="Order unique identifier."),
        dg.TableColumn("order_timestamp", "timestamp", description="When the order was placed."),
        dg.TableColumn(
            "cpf", "string", description="User unique identifier (CPF), key of the user entity."
        ),
        dg.TableColumn(
            "chargeback_timestamp",
            "timestamp",
            description="When a chargeback was reported for the order; null when none is known.",
        ),
    ]
)

EVENT_CHECKS = {
    "unique_order_id": "No order_id appears twice.",
    "non_null_keys": "order_id, cpf and order_timestamp are never null.",
    "dated_inside_partition": "Every row's day is one of the partitions written.",
}
CHARGEBACK_CHECKS = {
    **EVENT_CHECKS,
    "chargeback_after_order": "No chargeback is dated before its order.",
}


def _event_asset(name: str, dated_by: str, description: str) -> dg.AssetOut:
    return dg.AssetOut(
        key=name,
        description=description,
        group_name="raw",
        kinds={"spark", "deltalake"},
        io_manager_key="delta_io_manager",
        # an update ingests the days each table needs, so a run may select one table
        is_required=False,
        metadata={
            PARTITION_EXPR: dated_by,
            TABLE: layout.raw_table(name),
            FINGERPRINTED: True,
            "dagster/column_schema": EVENT_SCHEMA,
        },
    )


def _day_in(column: str, days: list[dt.date]) -> Column:
    return F.to_date(column).between(F.lit(days[0]), F.lit(days[-1]))


def _violations(dated_by: str, days: list[dt.date]) -> dict[str, Column]:
    """Each check's condition on a row that breaks it."""
    found = {
        "unique_order_id": checks.repeats("order_id"),
        "non_null_keys": F.col("order_id").isNull()
        | F.col("cpf").isNull()
        | F.col("order_timestamp").isNull(),
        "dated_inside_partition": ~_day_in(dated_by, days),
    }
    if dated_by == "chargeback_timestamp":
        found["chargeback_after_order"] = F.col("chargeback_timestamp") < F.col("order_timestamp")
    return found


# Each raw event asset, with the timestamp that dates (and partitions) its rows.
DATED_BY = {"order_events": "order_timestamp", "chargeback_events": "chargeback_timestamp"}


def raw_events(events: DataFrame) -> dict[str, DataFrame]:
    """Each raw event asset's rows, every day, from the landing's orders."""
    return {
        "order_events": events,
        "chargeback_events": events.where(F.col("chargeback_timestamp").isNotNull()),
    }


# one definition, quiet: see beta_parameters
with beta_parameters():

    @dg.multi_asset(
        pool=WRITER_POOL,
        outs={
            "order_events": _event_asset(
                "order_events",
                DATED_BY["order_events"],
                "Orders from the landing file, by order day.",
            ),
            "chargeback_events": _event_asset(
                "chargeback_events",
                DATED_BY["chargeback_events"],
                "Orders that got a chargeback, by chargeback day.",
            ),
        },
        partitions_def=daily_partitions,
        backfill_policy=SINGLE_RUN,
        can_subset=True,
        check_specs=[
            *checks.specs("order_events", EVENT_CHECKS),
            *checks.specs("chargeback_events", CHARGEBACK_CHECKS),
        ],
    )
    def order_and_chargeback_events(
        context: dg.AssetExecutionContext, spark: SparkResource, data_dir: DataDir
    ):
        """Validate the landing's files and split their orders into daily order and chargeback
        events."""
        directory = data_dir.landing_dir
        try:
            batch = read_landing_dir(
                spark.spark_session, directory, dt.date.fromisoformat(FIRST_DAY)
            )
        except LandingFileError as error:
            raise dg.Failure(
                description=str(error),
                metadata={"file": error.path, "problems": error.total or len(error.problems)},
                allow_retries=False,
            ) from None
        days = days_of(context.partition_time_window)
        try:
            landing = {
                "landing": dg.MetadataValue.path(str(directory)),
                "landing_files": ", ".join(p.name for p in landing_files(directory)),
                "landing_orders": batch.orders,
                "ignored_columns": ", ".join(batch.ignored_columns) or "none",
            }
            for name, df in raw_events(batch.events).items():
                if name not in context.selected_output_names:
                    continue
                dated_by = DATED_BY[name]
                in_days = df.where(_day_in(dated_by, days))
                # one pass: the checks' counts and the days' fingerprints the write records
                profile = changes.profile(
                    in_days,
                    dated_by,
                    fingerprint=True,
                    counts=_violations(dated_by, days),
                )
                add_day_metadata(context, name, day_rows(profile, days))
                yield dg.Output(
                    changes.Profiled(in_days, profile), output_name=name, metadata=landing
                )
                yield from checks.results(context, name, profile.counts)
        finally:
            release(batch)
