"""IO manager storing Spark DataFrames as Delta Lake tables (`legiti_assets.storage`).

A partitioned output may cover a range of days (a single-run backfill): its write is one
commit that replaces every day of the range, including days the new output has no rows for,
and no other day's rows. An input is read at the version that was latest when it was loaded,
and an output records the fingerprints of exactly that version's records: what it says it
was computed from is what it read, whatever commits land meanwhile.
"""

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from legiti_assets import changes, checks, storage
from legiti_assets.locations import is_local, uri
from legiti_assets.partitions import days_of
from legiti_assets.records import EMPTY, DayRecord, day_range, inputs_fingerprint
from legiti_assets.resources import DataDir, SparkResource
from legiti_assets.schemas import check_stored_schema, check_versions, spark_ddl
from legiti_assets.spark_compat import python_rows

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
# ... for an unpartitioned table, the columns (comma-separated) by which a preview of its first
# rows is taken from what was written.
PREVIEW_ORDER = "preview_order"
# ... for a daily table of keyed rows (a feature set's), the key column: each day's rows are
# stored in its order, so neighbours compress together.
KEY = "key"
# The version recorded for a day whose rows were conformed to new columns when it had none.
UNKNOWN = "unknown"
# Output metadata of a daily asset: the rows its run wrote over all its days. Each day's event
# has that day's rows as `dagster/row_count` (`add_day_metadata`).
RUN_ROWS = "run_rows"
# How many rows a preview shows; and a run of a daily asset previews its newest days up to this
# many rows in all: finding a day's first rows sorts all of its rows, so a backfill of years
# costs what its last weeks would.
PREVIEW_ROWS = 10
PREVIEW_SORTED_ROWS = 100_000


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


def add_day_metadata(
    context: dg.AssetExecutionContext,
    asset: str,
    per_day: Mapping[dt.date, Mapping[str, object]],
) -> None:
    """Give each day's materialization of `asset` figures of its own; call it before yielding
    the output. A range run records an event per day, each with the output's metadata: this is
    the day's alone (Dagster's partition-scoped asset metadata, merged over the output's)."""
    for day, metadata in per_day.items():
        context.add_asset_metadata(metadata, asset_key=asset, partition_key=str(day))


def day_rows(profile: changes.DayProfile, days: list[dt.date]) -> dict[dt.date, dict[str, object]]:
    """Each day's `dagster/row_count` (0 for a day without rows): the UI plots it per day."""
    return {day: {"dagster/row_count": profile.rows.get(day, 0)} for day in days}


def run_metadata(
    days: list[dt.date], rows: Mapping[dt.date | None, int], version: int
) -> dict[str, object]:
    """The output metadata of a daily asset's run: every day's event of a range run carries
    it, so these are the run's totals, named as such; each day's own figures are the asset's
    (`add_day_metadata`)."""
    return {
        RUN_ROWS: sum(rows.values()),
        "run_days": len(days),
        "run_days_with_rows": sum(1 for n in rows.values() if n),
        "run_first_day": str(days[0]),
        "run_last_day": str(days[-1]),
        "table_version": version,
    }


def _refuse_outside(
    name: str, rows: Mapping[dt.date | None, int], days: list[dt.date], dated_by: str
) -> None:
    if None in rows:
        raise dg.Failure(f"{name}: {rows[None]} row(s) have no {dated_by}; nothing was written.")
    outside = sorted(set(rows) - set(days))
    if outside:
        raise dg.Failure(
            f"{name}: rows dated {outside[0]} lie outside the partitions "
            f"{days[0]}..{days[-1]} being written; nothing was written."
        )


def _json_safe(value: object) -> str | int | float | bool | None:
    """A value as a table record holds it: times in UTC as the landing writes them
    (`YYYY-MM-DD HH:MM:SS`), days as `YYYY-MM-DD`, NaN and infinities as None."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime):  # Arrow collects them in UTC
        utc = value.astimezone(dt.UTC) if value.tzinfo else value
        return utc.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def preview_table(schema: StructType, rows: Iterable[Sequence[object]]) -> dg.TableMetadataValue:
    """Rows of `schema`'s columns as a table, each column typed as Spark names its type."""
    names = schema.fieldNames()
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord({n: _json_safe(v) for n, v in zip(names, row, strict=True)})
            for row in rows
        ],
        schema=dg.TableSchema(
            columns=[dg.TableColumn(f.name, f.dataType.simpleString()) for f in schema.fields]
        ),
    )


def preview(df: DataFrame, order_by: Sequence[str]) -> dg.TableMetadataValue:
    """The first `PREVIEW_ROWS` rows of `df` by `order_by` (Spark keeps a top few per
    partition: no sort of `df`)."""
    return preview_table(df.schema, python_rows(df.orderBy(*order_by).limit(PREVIEW_ROWS)))


def day_previews(
    df: DataFrame, dated_by: str, order_by: Sequence[str], rows: Mapping[dt.date | None, int]
) -> dict[dt.date, dg.TableMetadataValue]:
    """The first `PREVIEW_ROWS` rows of `df` by `order_by` of each of its newest days with rows
    (`rows` per day) that add up to `PREVIEW_SORTED_ROWS` rows, and of its newest day always."""
    shown: list[dt.date] = []
    for day in sorted((d for d, n in rows.items() if d is not None and n), reverse=True):
        if shown and sum(rows[d] for d in [*shown, day]) > PREVIEW_SORTED_ROWS:
            break
        shown.append(day)
    if not shown:
        return {}
    # Spark keeps each day's first rows in every partition before it shuffles them (a window
    # group limit), but sorts the days' rows to find them
    rank = F.row_number().over(Window.partitionBy(F.to_date(dated_by)).orderBy(*order_by))
    first = (
        df.where(F.expr(storage.day_bounds(dated_by, shown[-1], shown[0])))
        .select(F.to_date(dated_by).alias("_day"), rank.alias("_n"), *df.columns)
        .where(F.col("_n") <= PREVIEW_ROWS)
    )
    by_day: dict[dt.date, list[tuple[object, ...]]] = {}
    for day, _rank, *row in sorted(python_rows(first), key=lambda r: (r[0], r[1])):
        by_day.setdefault(day, []).append(tuple(row))
    return {day: preview_table(df.schema, rows) for day, rows in by_day.items()}


# What `Written.repeats` counts, as `checks.Counted` names it.
REPEATS = "repeats"


@dataclass(frozen=True)
class Written:
    """A commit of `write_days`: its table version and, if counted, how many rows repeat
    another row's time and key."""

    version: int
    repeats: int | None = None


def write_days(
    spark: SparkSession,
    data: DataDir,
    name: str,
    metadata: Mapping[str, object],
    days: list[dt.date],
    run_id: str,
    df: DataFrame,
    profile: changes.DayProfile | None = None,
    *,
    count_repeats: bool = False,
) -> Written:
    """Replace `days` of the table of asset `name` (its definition `metadata`) with `df`,
    in one commit. `profile`: `df`'s rows per day (and fingerprints, if the table records
    them). Without one, `df` is written in its only pass and its days record no rows; Delta
    refuses the write if a row is dated outside `days`. `count_repeats`: count, in the write,
    the rows that repeat another's time and key (a table with a key)."""
    table = data.resolve(str(metadata[TABLE]))
    storage.check_layout(name, table)
    dated_by = str(metadata[PARTITION_EXPR])
    based_on = storage.current_version(table)
    new_schema = based_on is not None and _columns(
        spark.read.format("delta").load(uri(table)).schema
    ) != _columns(df.schema)
    if profile is None and (new_schema or metadata.get(FINGERPRINTED)):
        profile = changes.profile(df, dated_by, fingerprint=bool(metadata.get(FINGERPRINTED)))
    if profile is not None:
        _refuse_outside(name, profile.rows, days, dated_by)
    content = profile.content if profile is not None and metadata.get(FINGERPRINTED) else None
    source = None
    if SOURCE_TABLE in metadata:
        source_table = data.resolve(str(metadata[SOURCE_TABLE]))
        source = storage.recorded(source_table, pin(run_id, source_table))
    known = storage.recorded(table, based_on)
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
        kept = storage.read(spark, table, based_on).where(~F.expr(replace_where))
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
                rows=None if profile is None else profile.rows.get(day, 0),
            )
            for day in days
        },
    }
    all_days = sorted(records) if new_schema else days
    then_by = [str(metadata[KEY])] if KEY in metadata else []
    if count_repeats and not then_by:
        raise ValueError(f"{name}: only a table with a key has repeats to count")
    repeat = "_repeats_an_earlier_row"
    clustered = storage.clustered(
        df, dated_by, all_days, then_by, repeats=repeat if count_repeats else None
    )
    counted = checks.Counted(clustered, {REPEATS: F.col(repeat)}) if count_repeats else None
    try:
        version = storage.write(
            clustered if counted is None else counted.df.drop(repeat),
            table,
            days=records,
            based_on=based_on,
            replace_where=replace_where,
            new_schema=new_schema,
        )
    except (PySparkException, Py4JJavaError) as error:
        if "DELTA_REPLACE_WHERE_MISMATCH" not in str(error):
            raise
        raise dg.Failure(
            f"{name}: rows with no {dated_by} or dated outside the partitions "
            f"{days[0]}..{days[-1]} being written; nothing was written."
        ) from error
    return Written(version, None if counted is None else counted.counts()[REPEATS])


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
            metadata = self._write_days(context, obj)
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
        shown: dict[str, object] = {}
        if PREVIEW_ORDER in context.definition_metadata:
            order_by = str(context.definition_metadata[PREVIEW_ORDER]).split(",")
            written = storage.read(self.spark.spark_session, table, version)
            shown["preview"] = preview(written, order_by)
        return {
            "dagster/row_count": rows,
            "table_version": version,
            **shown,
            **({"input_versions": dg.MetadataValue.json(facts[BUILT_FROM])} if inputs else {}),
        }

    def _write_days(
        self, context: dg.OutputContext, obj: DataFrame | changes.Profiled
    ) -> dict[str, object]:
        days = days_of(context.asset_partitions_time_window)
        metadata = context.definition_metadata
        dated_by = str(metadata[PARTITION_EXPR])
        df, profile = (obj.df, obj.profile) if isinstance(obj, changes.Profiled) else (obj, None)
        # an asset that profiled its output for its checks saves a pass over it here
        if (
            profile is None
            or profile.dated_by != dated_by
            or (metadata.get(FINGERPRINTED) and profile.content is None)
        ):
            profile = changes.profile(df, dated_by, fingerprint=bool(metadata.get(FINGERPRINTED)))
        name = context.asset_key.to_user_string()
        written = write_days(
            self.spark.spark_session, self.data, name, metadata, days, context.run_id, df, profile
        )
        return run_metadata(days, profile.rows, written.version)

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
