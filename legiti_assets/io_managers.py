"""IO manager storing Spark DataFrames as Parquet, one directory (and file) per month for
daily assets.

A partitioned output may cover a range of days (a single-run backfill): every day of the range
is replaced, including days the new output has no rows for, and no other day's rows change (a
month partly written keeps its other days' rows, copied into its new file).
"""

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from legiti_assets import changes, storage
from legiti_assets.partitions import days_of
from legiti_assets.resources import DataDir, SparkResource
from legiti_assets.schemas import check_stored_schema, check_versions, spark_ddl

PARTITION_COLUMNS = ("year", "month")
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
# The version recorded for a day whose rows were conformed to new columns when it had none.
UNKNOWN = "unknown"


def input_tables(data: DataDir, definition_metadata: Mapping[str, object]) -> list[Path]:
    """The tables an asset's output is computed from (by its definition metadata)."""
    paths = [str(definition_metadata[SOURCE_TABLE])] if SOURCE_TABLE in definition_metadata else []
    paths += [p for p in str(definition_metadata.get(INPUT_TABLES, "")).split(",") if p]
    return [data.resolve(p) for p in paths]


def _in_days(dated_by: str, days: list[dt.date]) -> Column:
    ts = F.col(dated_by)
    if days == changes.day_range(days[0], days[-1]):
        # bounds on the timestamp itself reach the Parquet reader, which skips row groups
        start = F.lit(days[0].isoformat()).cast("timestamp")
        end = F.lit((days[-1] + dt.timedelta(days=1)).isoformat()).cast("timestamp")
        return (ts >= start) & (ts < end)
    return F.to_date(ts).isin(days)


def read_days(
    spark: SparkSession,
    name: str,
    table: Path,
    days: list[dt.date],
    schema: dg.TableSchema,
    dated_by: str,
    version: str | None = None,
) -> DataFrame:
    """The stored `days` of a daily table, dated by its column `dated_by`, as one DataFrame of
    `schema`'s columns; raises, saying to backfill, if a day was written under other columns
    or another declaration `version`."""
    storage.check_layout(name, table)
    paths = [
        p for p in (storage.month_dir(table, m) for m in storage.months_of(days)) if p.is_dir()
    ]
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
        .where(_in_days(dated_by, days))
    )


def write_months(df: DataFrame, dated_by: str, folder: Path) -> None:
    """Write `df` under `folder` as `year=YYYY/month=M/` directories of one file each."""
    ts = F.col(dated_by)
    (
        # one task, so one file, per month: a partitioned write otherwise makes a file per
        # month and task; sorted, so a reader of a few days skips the other row groups
        df.withColumn("year", F.year(ts))
        .withColumn("month", F.month(ts))
        .repartition(*PARTITION_COLUMNS)
        # the write sorts by the partition columns itself and would drop a sort by `dated_by`
        # alone (SPARK-50469)
        .sortWithinPartitions(*PARTITION_COLUMNS, dated_by)
        .write.partitionBy(*PARTITION_COLUMNS)
        .parquet(storage.file_uri(folder))
    )


def _columns(schema: StructType) -> list[tuple[str, str]]:
    return sorted((f.name, f.dataType.simpleString()) for f in schema.fields)


def conformed(df: DataFrame, schema: StructType) -> DataFrame:
    """`df` with `schema`'s columns: present ones cast, missing ones null."""
    present = set(df.columns)
    return df.select(
        *(
            (F.col(f.name) if f.name in present else F.lit(None)).cast(f.dataType).alias(f.name)
            for f in schema.fields
        )
    )


class ParquetIOManager(dg.ConfigurableIOManager):
    """Parquet tables at `<data>/<the asset's "table" metadata>`; daily assets as
    `year=YYYY/month=M/` directories readable as one table by Spark, pandas and DuckDB."""

    spark: SparkResource
    data: DataDir

    def table_dir(self, definition_metadata: dict[str, object]) -> Path:
        return self.data.resolve(str(definition_metadata[TABLE]))

    def handle_output(
        self, context: dg.OutputContext, obj: DataFrame | changes.Profiled | None
    ) -> None:
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
                    df = obj.df if isinstance(obj, changes.Profiled) else obj
                    df.write.parquet(storage.file_uri(staged))
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
        self,
        context: dg.OutputContext,
        obj: DataFrame | changes.Profiled,
        table: Path,
        staged: Path,
    ) -> dict[str, object]:
        days = days_of(context.asset_partitions_time_window)
        metadata = context.definition_metadata
        dated_by = str(metadata[PARTITION_EXPR])
        fingerprinted = bool(metadata.get(FINGERPRINTED))
        name = context.asset_key.to_user_string()
        storage.check_layout(name, table)
        df, profile = (obj.df, obj.profile) if isinstance(obj, changes.Profiled) else (obj, None)
        # an asset that profiled its output for its checks saves a pass over it here
        if (
            profile is None
            or profile.dated_by != dated_by
            or (fingerprinted and profile.content is None)
        ):
            profile = changes.profile(df, dated_by, fingerprint=fingerprinted)
        content = profile.content if fingerprinted else None
        rows = profile.rows
        if None in rows:
            raise dg.Failure(
                f"{name}: {rows[None]} row(s) have no {dated_by}; nothing was replaced."
            )
        outside = sorted(set(rows) - set(days))
        if outside:
            raise dg.Failure(
                f"{name}: rows dated {outside[0]} lie outside the partitions "
                f"{days[0]}..{days[-1]} being written; nothing was replaced."
            )
        source = (
            storage.recorded(self.data.resolve(str(metadata[SOURCE_TABLE])))
            if SOURCE_TABLE in metadata
            else None
        )
        months = storage.months_of(days)
        written = set(days)
        in_days = F.coalesce(_in_days(dated_by, days), F.lit(False))  # a null date is not in
        merged = df
        stale: dict[dt.date, storage.DayRecord] = {}
        for month in months:
            live = storage.month_dir(table, month)
            if not live.is_dir() or written.issuperset(storage.days_in(month)):
                continue
            # the month's other days keep their rows: they move into its new file
            kept = self.spark.spark_session.read.parquet(storage.file_uri(live))
            if _columns(kept.schema) != _columns(df.schema):
                if VERSION not in metadata:
                    raise dg.Failure(
                        f"{name}: {live} holds other columns than this output; write every "
                        "stored day of it again (dagster asset materialize --partition-range)"
                    )
                # conformed to the new columns, the kept days must still read as stale
                stale.update(
                    (day, dataclasses.replace(record, version=record.version or UNKNOWN))
                    for day, record in storage.recorded(table).items()
                    if (day.year, day.month) == month and day not in written
                )
            merged = merged.unionByName(conformed(kept.where(~in_days), df.schema))
        write_months(merged, dated_by, staged)
        trash = staged.parent / "trash"
        for month in months:
            new = storage.month_dir(staged, month)
            live = storage.month_dir(table, month)
            storage.replace_dir(new if new.is_dir() else None, live, trash, table)
        storage.record_days(
            table,
            stale
            | {
                day: storage.DayRecord(
                    version=metadata.get(VERSION),
                    content=None if content is None else content.get(day, changes.EMPTY),
                    inputs=None
                    if source is None
                    else changes.inputs_fingerprint(source, day, int(metadata[SOURCE_LOOKBACK])),
                    rows=rows.get(day, 0),
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
                str(metadata[PARTITION_EXPR]),
                metadata.get(VERSION),
            )
        if not table.is_dir():
            raise dg.Failure(f"{name} is not materialized: {table} is missing")
        check_stored_schema(name, [table], schema)
        return spark.read.schema(spark_ddl(schema)).parquet(storage.file_uri(table))
