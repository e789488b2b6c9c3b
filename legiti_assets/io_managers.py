"""IO manager storing Spark DataFrames as Parquet, one directory per day for daily assets.

A partitioned output may cover a range of days (a single-run backfill): every day of the range
is replaced, including days the new output has no rows for, and no other day is touched.
"""

import contextlib
import datetime as dt
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from legiti_assets import changes, storage
from legiti_assets.partitions import days_of
from legiti_assets.resources import DataDir, SparkResource
from legiti_assets.schemas import check_stored_schema, check_versions, spark_ddl

PARTITION_COLUMNS = ("year", "month", "day")
# Definition metadata keys: the timestamp column that dates each row of a daily asset, and the
# table's path under the data directory (from `legiti_assets.layout`).
PARTITION_EXPR = "partition_expr"
TABLE = "table"
# ... the version of the declaration its days are computed under, if it has one;
VERSION = "declaration_version"
# ... for a table whose days an update compares with the landing, True: each day records a
# fingerprint of its rows;
FINGERPRINTED = "fingerprinted"
# ... for a daily table computed from another, that table's path and how many of its days
# before a day that day reads: each day records a fingerprint of them (`legiti_assets.changes`);
SOURCE_TABLE = "source_table"
SOURCE_LOOKBACK = "lookback_days"
# ... and for an unpartitioned table computed from whole tables, their paths, comma-separated:
# it records a fingerprint of them in INPUTS_FILE.
INPUT_TABLES = "input_tables"
INPUTS_FILE = "_inputs_fingerprint"  # "_": Spark, pandas and DuckDB globs skip it


def input_tables(data: DataDir, definition_metadata: Mapping[str, object]) -> list[Path]:
    """The tables an asset's output is computed from (by its definition metadata)."""
    paths = [str(definition_metadata[SOURCE_TABLE])] if SOURCE_TABLE in definition_metadata else []
    paths += [p for p in str(definition_metadata.get(INPUT_TABLES, "")).split(",") if p]
    return [data.resolve(p) for p in paths]


def _rows_per_day(staged: Path) -> dict[dt.date, int]:
    rows: dict[dt.date, int] = {}
    for day in storage.stored_days(staged):
        folder = storage.day_dir(staged, day)
        rows[day] = sum(pq.read_metadata(f).num_rows for f in folder.glob("*.parquet"))
    return rows


def read_days(
    spark: SparkSession,
    name: str,
    table: Path,
    days: list[dt.date],
    schema: dg.TableSchema,
    version: str | None = None,
) -> DataFrame:
    """The stored `days` of a daily table as one DataFrame of `schema`'s columns; raises, saying
    to backfill, if a day was written under other columns or another declaration `version`."""
    paths = storage.existing_days(table, days)
    if not paths:
        return spark.createDataFrame([], spark_ddl(schema))
    check_stored_schema(name, paths, schema)
    if version is not None:
        check_versions(name, storage.recorded_versions(table), days, version)
    return (
        spark.read.schema(spark_ddl(schema))
        .option("basePath", storage.file_uri(table))
        .parquet(*(storage.file_uri(p) for p in paths))
        .drop(*PARTITION_COLUMNS)
    )


class ParquetIOManager(dg.ConfigurableIOManager):
    """Parquet tables at `<data>/<the asset's "table" metadata>`; daily assets as
    `year=YYYY/month=M/day=D/` directories readable as one table by Spark, pandas and DuckDB."""

    spark: SparkResource
    data: DataDir

    def table_dir(self, definition_metadata: dict[str, object]) -> Path:
        return self.data.resolve(str(definition_metadata[TABLE]))

    def handle_output(self, context: dg.OutputContext, obj: DataFrame | None) -> None:
        if obj is None:
            return
        name = context.asset_key.path[-1]
        table = self.table_dir(context.definition_metadata)
        root = self.data.root
        staged = storage.staging_dir(root, name, context.run_id)
        inputs = input_tables(self.data, context.definition_metadata)
        # one writer per table at a time: two runs over overlapping days never interleave; and
        # no input is rewritten while this output is computed (lazily, as it is written) from it,
        # so the fingerprint of the inputs recorded is the one of what was read
        with storage.writer_lock(root, name), contextlib.ExitStack() as reading:
            for source in inputs:
                reading.enter_context(storage.writer_lock(root, source.name, shared=True))
            storage.clean_staging(root, name)
            try:
                if context.has_asset_partitions:
                    metadata = self._write_days(context, obj, table, staged)
                else:
                    obj.write.parquet(storage.file_uri(staged))
                    rows = sum(pq.read_metadata(f).num_rows for f in staged.glob("*.parquet"))
                    if inputs:
                        (staged / INPUTS_FILE).write_text(changes.tables_fingerprint(inputs))
                    storage.replace_dir(staged, table, staged.parent / "trash")
                    metadata = {"dagster/row_count": rows}
            finally:
                storage.clean_staging(root, name)
        # the column schema is definition metadata: a range run copies output metadata into
        # every day's event, and the schema would be most of the event log's size
        context.add_output_metadata({**metadata, "path": dg.MetadataValue.path(str(table))})

    def _write_days(
        self, context: dg.OutputContext, df: DataFrame, table: Path, staged: Path
    ) -> dict[str, object]:
        days = days_of(context.asset_partitions_time_window)
        metadata = context.definition_metadata
        dated_by = F.col(metadata[PARTITION_EXPR])
        content = (
            changes.day_fingerprints(df, metadata[PARTITION_EXPR])
            if metadata.get(FINGERPRINTED)
            else None
        )
        source = (
            storage.recorded(self.data.resolve(str(metadata[SOURCE_TABLE])))
            if SOURCE_TABLE in metadata
            else None
        )
        (
            # one task, so one file, per day: a partitioned write otherwise makes a file per
            # day and task
            df.repartition(F.to_date(dated_by))
            .withColumn("year", F.year(dated_by))
            .withColumn("month", F.month(dated_by))
            .withColumn("day", F.dayofmonth(dated_by))
            .write.partitionBy(*PARTITION_COLUMNS)
            .parquet(storage.file_uri(staged))
        )
        rows = _rows_per_day(staged)
        outside = sorted(set(rows) - set(days))
        if outside:
            raise dg.Failure(
                f"{context.asset_key.to_user_string()}: rows dated {outside[0]} lie outside the "
                f"partitions {days[0]}..{days[-1]} being written; nothing was replaced."
            )
        trash = staged.parent / "trash"
        for day in days:
            new = storage.day_dir(staged, day) if day in rows else None
            storage.replace_dir(new, storage.day_dir(table, day), trash)
        storage.record_days(
            table,
            {
                day: storage.DayRecord(
                    version=metadata.get(VERSION),
                    content=None if content is None else content.get(day, changes.EMPTY),
                    inputs=None
                    if source is None
                    else changes.inputs_fingerprint(source, day, int(metadata[SOURCE_LOOKBACK])),
                )
                for day in days
            },
        )
        # every day of a range run gets this metadata: a total there would read as per day
        rows_key = "dagster/row_count" if len(days) == 1 else "rows_written_in_run"
        return {
            rows_key: sum(rows.values()),
            "days_written": len(days),
            "days_with_rows": len(rows),
            "first_day": str(days[0]),
            "last_day": str(days[-1]),
        }

    def load_input(self, context: dg.InputContext) -> DataFrame:
        spark = self.spark.spark_session
        metadata = context.upstream_output.definition_metadata
        table = self.table_dir(metadata)
        schema = metadata["dagster/column_schema"]
        name = context.asset_key.to_user_string()
        if context.has_asset_partitions:
            if not context.asset_partition_keys:  # a lookback before the first partition
                return spark.createDataFrame([], spark_ddl(schema))
            return read_days(
                spark,
                name,
                table,
                days_of(context.asset_partitions_time_window),
                schema,
                metadata.get(VERSION),
            )
        if not table.is_dir():
            raise dg.Failure(f"{name} is not materialized: {table} is missing")
        check_stored_schema(name, [table], schema)
        return spark.read.schema(spark_ddl(schema)).parquet(storage.file_uri(table))
