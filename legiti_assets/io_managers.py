"""IO manager storing Spark DataFrames as Delta Lake tables (`legiti_assets.storage`).

A partitioned output may cover a range of days (a single-run backfill): its write is one
commit that replaces every day of the range, including days the new output has no rows for,
and no other day's rows. An input is read at the version that was latest when it was loaded,
and an output records the fingerprints of exactly that version's records: what it says it
was computed from is what it read, whatever commits land meanwhile.
"""

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from legiti_assets import changes, storage
from legiti_assets.locations import is_local, uri
from legiti_assets.partitions import days_of
from legiti_assets.records import EMPTY, DayRecord, day_range, inputs_fingerprint
from legiti_assets.resources import DataDir, SparkResource
from legiti_assets.schemas import check_stored_schema, check_versions, spark_ddl

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
# it records a fingerprint of their records, and the versions it read, in its commit.
INPUT_TABLES = "input_tables"
INPUTS = "inputs"  # the fact of a table's commits that holds that fingerprint
BUILT_FROM = "built_from"  # ... and the one that holds the versions of its inputs
# The version recorded for a day whose rows were conformed to new columns when it had none.
UNKNOWN = "unknown"


def input_tables(data: DataDir, definition_metadata: Mapping[str, object]) -> dict[str, Path]:
    """The tables an asset's output is computed from (by its definition metadata), by their
    paths under the data directory."""
    paths = [str(definition_metadata[SOURCE_TABLE])] if SOURCE_TABLE in definition_metadata else []
    paths += [p for p in str(definition_metadata.get(INPUT_TABLES, "")).split(",") if p]
    return {p: data.resolve(p) for p in paths}


# The version of each input table a run's steps read: (run id, table) -> version.
_read_versions: dict[tuple[str, Path], int] = {}


def pin(run_id: str, table: Path) -> int | None:
    """The version of `table` that run `run_id` reads: the latest when first asked."""
    key = (run_id, table.resolve() if is_local(table) else table)
    if key not in _read_versions:
        version = storage.current_version(table)
        if version is None:
            return None
        _read_versions[key] = version
    return _read_versions[key]


def check_stored(
    name: str,
    table: Path,
    schema: dg.TableSchema,
    days: list[dt.date],
    version: str | None,
    as_of: int,
) -> None:
    """Raise, saying to backfill, if table version `as_of` holds other columns than `schema`,
    or some of `days` were computed under another declaration than `version` (if given)."""
    check_stored_schema(name, table, schema, as_of)
    if version is not None:
        records = storage.recorded(table, as_of)
        check_versions(name, {d: r.version for d, r in records.items()}, days, version)


def read_days(
    spark: SparkSession,
    name: str,
    table: Path,
    days: list[dt.date],
    schema: dg.TableSchema,
    dated_by: str,
    version: str | None = None,
    as_of: int | None = None,
) -> DataFrame:
    """The stored `days` of a daily table (at table version `as_of`, default the latest),
    dated by its column `dated_by`, as one DataFrame of `schema`'s columns; raises, saying to
    backfill, if a day was written under other columns or another declaration `version`."""
    storage.check_layout(name, table)
    if as_of is None:
        as_of = storage.current_version(table)
    if as_of is None or not days:
        return spark.createDataFrame([], spark_ddl(schema))
    check_stored(name, table, schema, days, version, as_of)
    if days == day_range(days[0], days[-1]):
        # bounds on the timestamp itself skip the files of other days, by their statistics
        in_days = F.expr(storage.day_bounds(dated_by, days[0], days[-1]))
    else:
        in_days = F.to_date(dated_by).isin(days)
    return (
        storage.read(spark, table, as_of).select(*(c.name for c in schema.columns)).where(in_days)
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


def _run_id(context: dg.InputContext) -> str:
    try:
        return context.step_context.run_id
    except dg.DagsterInvariantViolationError:  # a load outside a run: no output reads its pin
        return ""


class DeltaIOManager(dg.ConfigurableIOManager):
    """Delta Lake tables at `<data>/<the asset's "table" metadata>`, readable as one table by
    Spark, `deltalake`, pandas and DuckDB; daily assets replace their days in one commit."""

    spark: SparkResource
    data: DataDir

    def table_dir(self, definition_metadata: Mapping[str, object]) -> Path:
        return self.data.resolve(str(definition_metadata[TABLE]))

    def handle_output(
        self, context: dg.OutputContext, obj: DataFrame | changes.Profiled | None
    ) -> None:
        if obj is None:
            return
        table = self.table_dir(context.definition_metadata)
        name = context.asset_key.to_user_string()
        storage.check_layout(name, table)
        if context.has_asset_partitions:
            metadata = self._write_days(context, obj, table)
        else:
            metadata = self._write_table(context, obj, table)
        # the column schema is definition metadata: a range run copies output metadata into
        # every day's event, and the schema would be most of the event log's size
        context.add_output_metadata({**metadata, "path": dg.MetadataValue.path(str(table))})

    def _write_table(
        self, context: dg.OutputContext, obj: DataFrame | changes.Profiled, table: Path
    ) -> dict[str, object]:
        df = obj.df if isinstance(obj, changes.Profiled) else obj
        inputs = input_tables(self.data, context.definition_metadata)
        versions = {t: pin(context.run_id, t) for t in inputs.values()}
        facts: dict[str, object] = {}
        if inputs:
            facts[INPUTS] = changes.tables_fingerprint(versions)
            facts[BUILT_FROM] = {name: versions[t] for name, t in inputs.items()}
        version = storage.write(
            df,
            table,
            days={},
            facts=facts,
            based_on=storage.current_version(table),
            new_schema=True,
        )
        rows = storage.committed_rows(table, version)
        return {
            "dagster/row_count": rows,
            "table_version": version,
            **({"input_versions": dg.MetadataValue.json(facts[BUILT_FROM])} if inputs else {}),
        }

    def _write_days(
        self, context: dg.OutputContext, obj: DataFrame | changes.Profiled, table: Path
    ) -> dict[str, object]:
        days = days_of(context.asset_partitions_time_window)
        metadata = context.definition_metadata
        dated_by = str(metadata[PARTITION_EXPR])
        fingerprinted = bool(metadata.get(FINGERPRINTED))
        name = context.asset_key.to_user_string()
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
                f"{name}: {rows[None]} row(s) have no {dated_by}; nothing was written."
            )
        outside = sorted(set(rows) - set(days))
        if outside:
            raise dg.Failure(
                f"{name}: rows dated {outside[0]} lie outside the partitions "
                f"{days[0]}..{days[-1]} being written; nothing was written."
            )
        source = None
        if SOURCE_TABLE in metadata:
            source_table = self.data.resolve(str(metadata[SOURCE_TABLE]))
            source = storage.recorded(source_table, pin(context.run_id, source_table))
        based_on = storage.current_version(table)
        known = storage.recorded(table, based_on)
        new_schema = based_on is not None and _columns(
            self.spark.spark_session.read.format("delta").load(uri(table)).schema
        ) != _columns(df.schema)
        replace_where: str | None = storage.day_bounds(dated_by, days[0], days[-1])
        stale: dict[dt.date, DayRecord] = {}
        if new_schema:
            if VERSION not in metadata:
                raise dg.Failure(
                    f"{name}: {table} holds other columns than this output; write every "
                    "stored day of it again (dagster asset materialize --partition-range)"
                )
            # the whole table is rewritten under the new columns; its other days, conformed
            # to them, must still read as stale
            kept = storage.read(self.spark.spark_session, table, based_on).where(
                ~F.expr(replace_where)
            )
            df = df.unionByName(conformed(kept, df.schema))
            replace_where = None
            stale = {
                day: DayRecord(**{**vars(r), "version": r.version or UNKNOWN})
                for day, r in known.items()
                if day not in set(days)
            }
        records = {
            **known,
            **stale,
            **{
                day: DayRecord(
                    version=metadata.get(VERSION),
                    content=None if content is None else content.get(day, EMPTY),
                    inputs=None
                    if source is None
                    else inputs_fingerprint(source, day, int(metadata[SOURCE_LOOKBACK])),
                    rows=rows.get(day, 0),
                )
                for day in days
            },
        }
        all_days = sorted(records) if new_schema else days
        version = storage.write(
            storage.clustered(df, dated_by, all_days),
            table,
            days=records,
            based_on=based_on,
            replace_where=replace_where,
            new_schema=new_schema,
        )
        # every day of a range run gets this metadata: a total there would read as per day
        rows_key = "dagster/row_count" if len(days) == 1 else "rows_written_in_run"
        return {
            rows_key: sum(rows.values()),
            "days_written": len(days),
            "days_with_rows": len(rows),
            "first_day": str(days[0]),
            "last_day": str(days[-1]),
            "table_version": version,
        }

    def load_input(self, context: dg.InputContext) -> DataFrame:
        spark = self.spark.spark_session
        metadata = context.upstream_output.definition_metadata
        table = self.table_dir(metadata)
        schema = metadata["dagster/column_schema"]
        name = context.asset_key.to_user_string()
        storage.check_layout(name, table)
        version = pin(_run_id(context), table)
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
                version,
            )
        if version is None:
            raise dg.Failure(f"{name} is not materialized: {table} is not a Delta table yet")
        check_stored_schema(name, table, schema, version)
        return storage.read(spark, table, version).select(*(c.name for c in schema.columns))
