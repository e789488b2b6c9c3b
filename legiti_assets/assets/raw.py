"""Raw order and chargeback events, ingested from the landing CSV into daily partitions."""

import datetime as dt

import dagster as dg
from pyspark.sql import Column
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
from legiti_assets.landing import (
    DATED_BY,
    LandingFileError,
    landing_files,
    read_landing_dir,
    release,
)
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
            for name, dated_by in DATED_BY.items():
                if name not in context.selected_output_names:
                    continue
                in_days = batch.raw_table(name).where(_day_in(dated_by, days))
                # counted in the pass that validated the landing: the days' rows, fingerprints
                # and checks the write records
                profile = batch.profile(name, days)
                add_day_metadata(context, name, day_rows(profile, days))
                yield dg.Output(
                    changes.Profiled(in_days, profile), output_name=name, metadata=landing
                )
                # the rows written are those of the days written
                counts = {**profile.counts, "dated_inside_partition": 0}
                yield from checks.results(context, name, counts)
        finally:
            release(batch)
