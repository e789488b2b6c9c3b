"""`make migrate`: tables stored a directory per day become month files, nothing lost."""

import datetime as dt
import json
import shutil
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from legiti_assets import migrate, storage
from legiti_assets.catalog import SPECS
from legiti_assets.pit_join import read_states
from legiti_assets.resources import DataDir
from legiti_assets.update import update
from legiti_assets_tests.helpers import FEATURE_STORE, feature_rows, read_table, resources_for
from legiti_assets_tests.sample import USER_CHARGEBACKS, USER_ORDERS

ORDERS_30 = "cpf_orders__count_over_30_days_rolling_windows"


def _as_day_directories(spark, table: Path, dated_by: str) -> None:
    """Rewrite `table` as the code before month files stored it: a directory per day, and a
    manifest without row counts."""
    ts = F.col(dated_by)
    old = table.parent / f"{table.name}.old"
    table.rename(old)
    (
        spark.read.parquet(str(old))
        .drop("year", "month")
        .withColumn("year", F.year(ts))
        .withColumn("month", F.month(ts))
        .withColumn("day", F.dayofmonth(ts))
        .repartition("year", "month", "day")
        .write.partitionBy("year", "month", "day")
        .parquet(str(table))
    )
    manifest = json.loads((old / storage.MANIFEST).read_text())
    for record in manifest.values():
        del record["rows"]
    (table / storage.MANIFEST).write_text(json.dumps(manifest))
    shutil.rmtree(old)


def _daily_tables(data: Path) -> list[tuple[Path, str]]:
    return [
        (table, dated_by) for _, table, dated_by in migrate.daily_tables(DataDir(path=str(data)))
    ]


@pytest.fixture
def legacy(built_sample, tmp_path, spark) -> tuple[Path, dict]:
    """A copy of the built sample in the day-directory layout, and what each table held."""
    data = Path(shutil.copytree(built_sample, tmp_path / "data"))
    before = {}
    for table, dated_by in _daily_tables(data):
        before[table] = (read_table(table), storage.recorded(table))
        _as_day_directories(spark, table, dated_by)
    assert storage.has_day_directories(data / FEATURE_STORE / "user_orders")
    return data, before


def test_migrate_keeps_every_row_and_record_and_is_idempotent(legacy, spark) -> None:
    data, before = legacy
    with pytest.raises(
        storage.LayoutError, match=r"user_orders: .* one directory per day.*make migrate"
    ):
        read_states(spark, data, SPECS["user_orders"])

    converted = migrate.migrate(spark, DataDir(path=str(data)))

    assert sorted(converted) == sorted(before)
    for table, (rows, records) in before.items():
        assert not storage.has_day_directories(table), table
        assert read_table(table) == rows, table
        assert storage.recorded(table) == records, table  # row counts included
        for month in storage.stored_months(table):
            assert len(list(storage.month_dir(table, month).glob("*.parquet"))) == 1
    assert feature_rows(data, "user_orders") == USER_ORDERS
    assert feature_rows(data, "user_chargebacks") == USER_CHARGEBACKS
    assert storage.stored_days(data / FEATURE_STORE / "user_orders") == sorted(
        {row[1].date() for row in USER_ORDERS}
    )
    assert migrate.migrate(spark, DataDir(path=str(data))) == []
    assert not (data / ".staging" / "user_orders").exists()

    # fingerprints and mirrored days are kept, and the manifests are byte for byte those the
    # legacy tables were made from: an update rewrites nothing
    report = update(dg.DagsterInstance.ephemeral(), resources_for(data))
    assert report.lines()[1:] == [
        "order_events: ingested none",
        "chargeback_events: ingested none",
        "user_orders: recomputed none",
        "user_chargebacks: recomputed none",
        "everything is up to date: nothing was rewritten",
    ]


def test_a_day_under_older_columns_gets_the_newest_and_stays_refused(legacy, spark) -> None:
    data, _ = legacy
    table = data / FEATURE_STORE / "user_orders"
    day = table / "year=2020" / "month=5" / "day=13"
    older = pq.read_table(next(day.glob("*.parquet"))).drop_columns([ORDERS_30])
    shutil.rmtree(day)
    day.mkdir()
    pq.write_table(older, day / "part-0.parquet")
    manifest = json.loads((table / storage.MANIFEST).read_text())
    manifest["2020-05-13"]["version"] = "older"
    (table / storage.MANIFEST).write_text(json.dumps(manifest))

    migrate.migrate(spark, DataDir(path=str(data)))

    may = read_table(storage.month_dir(table, (2020, 5)))
    on_13 = [row for row in USER_ORDERS if row[1] == dt.datetime(2020, 5, 13)]
    assert len(on_13) == 2
    assert [row for row in may if row[1] == dt.datetime(2020, 5, 13)] == [
        (*row[:-1], None) for row in on_13
    ]
    assert [row for row in may if row[1] != dt.datetime(2020, 5, 13)] == [
        row for row in USER_ORDERS if row[1].month == 5 and row[1].year == 2020 and row[1].day != 13
    ]
    assert storage.recorded(table)[dt.date(2020, 5, 13)].version == "older"
    with pytest.raises(Exception, match=r"user_orders: 1 stored day\(s\), 2020-05-13 .*backfill"):
        read_states(spark, data, SPECS["user_orders"])
