"""Daily tables as Delta tables: random range writes against a model of day -> rows.

A write over days [a, b] is one commit that replaces exactly those days (days it has no rows
for lose theirs), rewrites no file that holds only other days, and changes no other day's rows,
across month and year ends and 29 February; reads of contiguous and scattered days return
exactly those days' rows; each commit's records count each day's rows; every earlier version
still reads as it was.
"""

import datetime as dt
import random
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from legiti_assets import layout, storage
from legiti_assets.io_managers import (
    PARTITION_EXPR,
    TABLE,
    UNKNOWN,
    VERSION,
    read_days,
    write_days,
)
from legiti_assets.partitions import SINGLE_RUN, beta_parameters, daily_partitions, days_of
from legiti_assets.resources import DataDir, SparkResource
from legiti_assets.schemas import StoredSchemaError
from legiti_assets.vacuum import vacuum_job
from legiti_assets_tests.helpers import read_table, resources_for

SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("id", "string"),
        dg.TableColumn("ts", "timestamp"),
        dg.TableColumn("value", "bigint"),
    ]
)
SCHEMA_DDL = "id string, ts timestamp, value bigint"
FIRST, LAST = dt.date(2019, 12, 27), dt.date(2020, 3, 3)  # two month ends, a year end, 29 Feb
# What the next run of `events` outputs, by day: set by the test before each run.
OUTPUT: dict[dt.date, list[tuple]] = {}

with beta_parameters():

    @dg.asset(
        partitions_def=daily_partitions,
        backfill_policy=SINGLE_RUN,
        io_manager_key="delta_io_manager",
        metadata={PARTITION_EXPR: "ts", TABLE: "raw/events", "dagster/column_schema": SCHEMA},
    )
    def events(context: dg.AssetExecutionContext, spark: SparkResource) -> DataFrame:
        rows = [r for day in days_of(context.partition_time_window) for r in OUTPUT.get(day, [])]
        return spark.spark_session.createDataFrame(rows, "id string, ts timestamp, value bigint")


def _rows(rng: random.Random, day: dt.date) -> list[tuple]:
    # seconds from 0 to 86399: the first and last instants of the day included
    seconds = rng.choice([[], [0], [86399], [0, 86399, rng.randrange(86400)], [3600] * 2])
    return [
        (f"{day}-{i}", dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=s), i)
        for i, s in enumerate(seconds)
    ]


def _write(data_dir: Path, first: dt.date, last: dt.date) -> None:
    result = dg.materialize(
        [events],
        resources=resources_for(data_dir),
        instance=dg.DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": str(first),
            "dagster/asset_partition_range_end": str(last),
        },
    )
    assert result.success


def _files(table: Path, version: int) -> dict[str, tuple[dt.datetime, dt.datetime]]:
    """Each data file of `version`, with its first and last `ts`."""
    actions = pa.table(DeltaTable(str(table), version=version).get_add_actions(flatten=True))
    return {row["path"]: (row["min.ts"], row["max.ts"]) for row in actions.to_pylist()}


def _removed_spans(table: Path, version: int) -> list[tuple[dt.datetime, dt.datetime]]:
    """The first and last `ts` of each file that commit `version` removed."""
    after = _files(table, version)
    return [span for path, span in _files(table, version - 1).items() if path not in after]


def _added_months(table: Path, version: int) -> list[set[tuple[int, int]]]:
    """The months of `ts` in each file that commit `version` added."""
    before = _files(table, version - 1) if version else {}
    return [
        {(t.year, t.month) for t in span}
        for path, span in _files(table, version).items()
        if path not in before
    ]


def _by_day(rows: list[tuple]) -> dict[dt.date, list[tuple]]:
    found: dict[dt.date, list[tuple]] = {}
    for row in rows:
        found.setdefault(row[1].date(), []).append(row)
    return found


@pytest.mark.parametrize("seed", [1, 2])
def test_random_range_writes_replace_exactly_their_days(tmp_path, spark, seed) -> None:
    rng = random.Random(seed)
    table = tmp_path / "raw" / "events"
    every_day = [FIRST + dt.timedelta(days=i) for i in range((LAST - FIRST).days + 1)]
    model: dict[dt.date, list[tuple]] = {}
    versions: list[tuple[int, dict[dt.date, list[tuple]]]] = []
    for _ in range(6):
        first, last = sorted(rng.sample(every_day, 2))
        days = [d for d in every_day if first <= d <= last]
        OUTPUT.clear()
        OUTPUT.update({day: _rows(rng, day) for day in days})
        _write(tmp_path, first, last)
        for day in days:
            model[day] = OUTPUT[day]
            if not model[day]:
                del model[day]

        assert _by_day(read_table(table)) == {d: sorted(r) for d, r in model.items()}
        assert storage.stored_days(table) == sorted(model)
        assert {d: r.rows for d, r in storage.recorded(table).items() if r.rows} == {
            d: len(r) for d, r in model.items()
        }
        version = storage.current_version(table)
        assert version == len(versions)  # one commit per write
        versions.append((version, {d: sorted(r) for d, r in model.items()}))
        # each file a month's: a later write of a day rewrites its month alone
        added = _added_months(table, version)
        assert all(len(months) == 1 for months in added), added
        if version:
            # a file the commit removed held a day it wrote
            for first_ts, last_ts in _removed_spans(table, version):
                assert any(first_ts.date() <= d <= last_ts.date() for d in days)

        a, b = sorted(rng.sample(every_day, 2))
        contiguous = [d for d in every_day if a <= d <= b]
        scattered = sorted(rng.sample(every_day, 9))
        for wanted in (contiguous, scattered):
            got = read_days(spark, "events", table, wanted, SCHEMA, "ts").collect()
            assert sorted(tuple(r) for r in got) == sorted(
                row for d in wanted for row in model.get(d, [])
            )
    for version, then in versions:  # time travel: each version reads as it was written
        rows = storage.read(spark, table, version).collect()
        assert _by_day(sorted(tuple(r) for r in rows)) == then


def test_rows_without_a_timestamp_are_refused_and_nothing_is_replaced(tmp_path) -> None:
    day = dt.date(2020, 1, 31)
    OUTPUT.clear()
    OUTPUT[day] = _rows(random.Random(3), day) or [("a", dt.datetime(2020, 1, 31, 5), 1)]
    _write(tmp_path, day, day)
    table = tmp_path / "raw" / "events"
    before = read_table(table)
    OUTPUT[day] = [("b", None, 2)]
    result = dg.materialize(
        [events],
        resources=resources_for(tmp_path),
        instance=dg.DagsterInstance.ephemeral(),
        partition_key=str(day),
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "events: 1 row(s) have no ts; nothing was written." in str(failure.event_specific_data)
    assert read_table(table) == before


def test_a_write_in_one_pass_records_no_rows_and_delta_refuses_rows_outside(
    tmp_path, spark
) -> None:
    """A feature set's write: no profile before it, so its days record no row counts (they are
    counted from the version written) and read as stored; a row dated outside the days fails
    the write, and nothing is committed."""
    data = DataDir(path=str(tmp_path))
    metadata = events.metadata_by_key[events.key]
    table = tmp_path / "raw" / "events"
    jan31, feb1 = dt.date(2020, 1, 31), dt.date(2020, 2, 1)
    late = spark.createDataFrame([("a", dt.datetime(2020, 1, 31, 23, 59, 59), 1)], SCHEMA_DDL)
    version = write_days(spark, data, "events", metadata, [jan31, feb1], "r1", late).version
    assert storage.recorded(table)[jan31] == storage.recorded(table)[feb1]
    assert storage.recorded(table)[jan31].rows is None
    assert storage.stored_days(table) == [jan31, feb1]
    assert storage.newest(table, "ts") == dt.datetime(2020, 1, 31, 23, 59, 59, tzinfo=dt.UTC)
    for bad in (late, late.selectExpr("id", "CAST(NULL AS timestamp) AS ts", "value")):
        with pytest.raises(dg.Failure, match=r"outside the partitions 2020-02-01..2020-02-01"):
            write_days(spark, data, "events", metadata, [feb1], "r2", bad)
    assert storage.current_version(table) == version
    assert read_table(table) == [("a", dt.datetime(2020, 1, 31, 23, 59, 59), 1)]


with beta_parameters():

    @dg.asset(
        partitions_def=daily_partitions,
        backfill_policy=SINGLE_RUN,
        io_manager_key="delta_io_manager",
        metadata={
            PARTITION_EXPR: "ts",
            TABLE: "feature_store/versioned",
            VERSION: "v2",
            "dagster/column_schema": SCHEMA,
        },
    )
    def versioned(context: dg.AssetExecutionContext, spark: SparkResource) -> DataFrame:
        rows = [r for day in days_of(context.partition_time_window) for r in OUTPUT.get(day, [])]
        return spark.spark_session.createDataFrame(rows, "id string, ts timestamp, value bigint")


def test_a_day_written_under_new_columns_leaves_the_other_days_refused(tmp_path, spark) -> None:
    """The table's other days, stored under older columns with no recorded version, are
    conformed to the new columns and recorded as of an unknown declaration."""
    table = tmp_path / "feature_store" / "versioned"
    old = [("a", dt.datetime(2020, 2, 3, 1)), ("b", dt.datetime(2020, 2, 29, 23, 59, 59))]
    storage.write(
        spark.createDataFrame(old, "id string, ts timestamp"),
        table,
        days={
            dt.date(2020, 2, 3): storage.DayRecord(rows=1),
            dt.date(2020, 2, 29): storage.DayRecord(rows=1),
        },
        based_on=None,
    )
    OUTPUT.clear()
    OUTPUT[dt.date(2020, 2, 10)] = [("c", dt.datetime(2020, 2, 10, 12), 7)]
    result = dg.materialize(
        [versioned],
        resources=resources_for(tmp_path),
        instance=dg.DagsterInstance.ephemeral(),
        partition_key="2020-02-10",
    )
    assert result.success
    assert read_table(table) == [
        ("a", dt.datetime(2020, 2, 3, 1), None),
        ("b", dt.datetime(2020, 2, 29, 23, 59, 59), None),
        ("c", dt.datetime(2020, 2, 10, 12), 7),
    ]
    versions = storage.recorded_versions(table)
    assert versions == {
        dt.date(2020, 2, 3): UNKNOWN,
        dt.date(2020, 2, 10): "v2",
        dt.date(2020, 2, 29): UNKNOWN,
    }
    tenth = read_days(spark, "versioned", table, [dt.date(2020, 2, 10)], SCHEMA, "ts", "v2")
    assert [tuple(r) for r in tenth.collect()] == [("c", dt.datetime(2020, 2, 10, 12), 7)]
    with pytest.raises(StoredSchemaError, match=r"versioned: 2 stored day\(s\), 2020-02-03 to"):
        read_days(spark, "versioned", table, storage.stored_days(table), SCHEMA, "ts", "v2")


def test_a_writer_that_read_an_older_version_is_refused(tmp_path, spark) -> None:
    """A commit landing between a writer's read of the records and its own commit makes the
    writer fail, saying so, instead of committing records that lack the other's days."""
    table = tmp_path / "t"
    rows = spark.createDataFrame([("a", dt.datetime(2020, 1, 1, 1), 1)], SCHEMA_DDL)
    day = {dt.date(2020, 1, 1): storage.DayRecord(rows=1)}
    storage.write(rows, table, days=day, based_on=None)
    storage.write(rows, table, days=day, based_on=0)  # another writer, at version 1
    with pytest.raises(storage.ConcurrentWriteError, match="after this run read it at version 0"):
        storage.write(rows, table, days=day, based_on=0)
    assert storage.current_version(table) == 1


def test_a_table_of_the_layout_before_delta_is_refused_with_advice(tmp_path) -> None:
    table = tmp_path / "raw" / "events"
    (table / "year=2020" / "month=1").mkdir(parents=True)
    with pytest.raises(storage.LayoutError, match=r"events: .* not a Delta table.*make migrate"):
        storage.check_layout("events", table)


def test_vacuum_keeps_every_version_within_the_retention_period(tmp_path, spark) -> None:
    """Replaced files stay until they are older than the retention period (7 days): the first
    version still reads whole after the daily vacuum job ran."""
    table = tmp_path / layout.raw_table("order_events")
    day = {dt.date(2020, 1, 1): storage.DayRecord(rows=1)}
    for value in (1, 2):
        rows = [("a", dt.datetime(2020, 1, 1, 1), value)]
        storage.write(
            spark.createDataFrame(rows, SCHEMA_DDL),
            table,
            days=day,
            based_on=storage.current_version(table),
        )
    files = set(table.glob("*.parquet"))
    result = vacuum_job.execute_in_process(resources={"data_dir": DataDir(path=str(tmp_path))})
    assert result.success
    assert [tuple(r) for r in storage.read(spark, table, 0).collect()] == [
        ("a", dt.datetime(2020, 1, 1, 1), 1)
    ]
    assert set(table.glob("*.parquet")) == files


def test_each_month_of_a_write_has_a_partition_of_its_own(spark) -> None:
    values = [*range(-40, 200), 2**31 - 1, -(2**31), 123_456_789]
    hashed = spark.createDataFrame([(v,) for v in values], "v int").select("v", F.hash("v"))
    assert {v: storage.spark_hash_int(v) for v in values} == dict(hashed.collect())
    for n in range(1, 41):
        keys = F.array(*(F.lit(k) for k in storage.partition_keys(n)))
        months = spark.range(n).select(F.col("id").cast("int").alias("m"))
        placed = months.repartition(n, F.element_at(keys, F.col("m") + 1))
        assert dict(placed.select("m", F.spark_partition_id()).collect()) == {
            m: m for m in range(n)
        }
