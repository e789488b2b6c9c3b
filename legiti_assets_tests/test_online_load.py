"""The online assets' load through Spark: each key's latest state goes into SQLite in bulk from
the driver, into Redis from the executors, by the store's rule (an older state never replaces a
newer one, except within the rewritten days); only counts come back. Redis runs if
LEGITI_TEST_REDIS_URL is set."""

from __future__ import annotations

import calendar
import datetime as dt
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from random import Random

import pytest
import redis
from pyspark.sql import SparkSession

from legiti_assets import layout, storage
from legiti_assets.assets.online import latest_per_key, load_latest, midnight, mirror_days
from legiti_assets.catalog import ONLINE_TABLES, SPECS
from legiti_assets.engine import feature_set_spec
from legiti_assets.local_latest import newest_states
from legiti_assets.online import Loaded, OnlineStore, RedisOnlineStore, SQLiteOnlineStore
from legiti_assets.records import DayRecord
from legiti_assets.resources import DataDir
from legiti_assets.schemas import spark_ddl, state_schema
from legiti_assets_tests.extended_registry import DELAYS

REDIS_URL = os.environ.get("LEGITI_TEST_REDIS_URL")
SPEC = SPECS["user_orders"]
TABLE = ONLINE_TABLES["user_orders"]
STATES_DDL = spark_ddl(state_schema(SPEC))


def day(n: int) -> dt.date:
    return dt.date(2020, 5, n)


def at(n: int) -> dt.datetime:
    """Midnight of 2020-05-n, naive: what Spark's rows hold (the session is UTC)."""
    return dt.datetime(2020, 5, n)


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "redis",
            marks=pytest.mark.skipif(not REDIS_URL, reason="set LEGITI_TEST_REDIS_URL"),
        ),
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    if request.param == "sqlite":
        with SQLiteOnlineStore(tmp_path / "online.db") as sqlite_store:
            yield sqlite_store
        return
    assert REDIS_URL
    prefix = f"legiti_test_{uuid.uuid4().hex}"
    with RedisOnlineStore(REDIS_URL, key_prefix=prefix) as redis_store:
        yield redis_store
    client = redis.Redis.from_url(REDIS_URL)
    try:
        stale = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if stale:
            client.delete(*stale)
    finally:
        client.close()


def orders(store: OnlineStore, keys: list[str]) -> dict[str, tuple]:
    found = store.get_features("user", keys, [TABLE])
    return {
        key: (
            *(found[key][c] for c in TABLE.feature_columns),
            found[key][TABLE.timestamp_feature],
        )
        for key in keys
    }


def test_load_latest_applies_by_the_rule_and_counts_per_timestamp(
    spark: SparkSession, store: OnlineStore
) -> None:
    # 1000 keys over 4 partitions (Redis: 4 executor tasks), dated the 1st (even) or the 2nd
    # (odd); every 10th key (all dated the 1st) holds a newer state
    store.write_latest(
        TABLE, [(f"k{i:03d}", midnight(day(9)), [9, 9, 9]) for i in range(0, 1000, 10)]
    )
    rows = [(f"k{i:03d}", at(1 + i % 2), i % 3, i % 5, i % 7) for i in range(1000)]
    latest = spark.createDataFrame(rows, STATES_DDL).repartition(4)
    loaded = load_latest(store, TABLE, latest)
    assert loaded == Loaded(
        offered={midnight(day(1)): 500, midnight(day(2)): 500},
        applied={midnight(day(1)): 400, midnight(day(2)): 500},
    )
    assert orders(store, ["k000", "k001", "k998", "k999"]) == {
        "k000": (9, 9, 9, midnight(day(9))),
        "k001": (1, 1, 1, midnight(day(2))),
        "k998": (2, 3, 4, midnight(day(1))),
        "k999": (0, 4, 5, midnight(day(2))),
    }
    # the run that rewrote days up to the 9th replaces what it knows is gone
    again = spark.createDataFrame([("k000", at(1), 1, 1, 1)], STATES_DDL)
    assert load_latest(store, TABLE, again, midnight(day(9))) == Loaded(
        offered={midnight(day(1)): 1}, applied={midnight(day(1)): 1}
    )
    assert orders(store, ["k000"]) == {"k000": (1, 1, 1, midnight(day(1)))}
    assert store.count(TABLE) == 1000


def test_an_empty_load_counts_nothing(spark: SparkSession, store: OnlineStore) -> None:
    nothing = spark.createDataFrame([], STATES_DDL)
    assert load_latest(store, TABLE, nothing) == Loaded({}, {})
    assert store.count(TABLE) == 0


def _history(spark: SparkSession, data_dir: Path, rows: list[tuple]) -> None:
    """The feature set's stored rows, as its asset records them."""
    table = data_dir / layout.feature_set_table(SPEC.entity, SPEC.name)
    days = sorted({row[1].date() for row in rows})
    storage.write(
        spark.createDataFrame(rows, STATES_DDL),
        table,
        days={
            d: DayRecord(version=SPEC.version, rows=sum(r[1].date() == d for r in rows))
            for d in days
        },
        based_on=None,
    )


def test_a_run_takes_back_what_its_days_no_longer_hold_and_never_regresses(
    spark: SparkSession, store: OnlineStore, tmp_path: Path
) -> None:
    """A run over 2020-05-02..03 after a correction removed x's and y's rows of the 3rd."""
    store.write_latest(
        TABLE,
        [
            ("x", midnight(day(3)), [9, 9, 9]),  # removed: back to its row of the 1st
            ("y", midnight(day(3)), [8, 8, 8]),  # removed, no earlier row: deleted
            ("z", midnight(day(3)), [5, 5, 5]),  # rewritten
            ("v", midnight(day(2)), [1, 1, 1]),  # a newer state on the 3rd
            ("w", midnight(day(5)), [7, 7, 7]),  # newer than the run: kept
        ],
    )
    rewritten = [
        ("z", at(3), 6, 6, 6),
        ("v", at(3), 2, 2, 2),
        ("w", at(3), 4, 4, 4),
    ]
    _history(spark, tmp_path, [("x", at(1), 1, 1, 1), *rewritten, ("w", at(5), 7, 7, 7)])
    states = spark.createDataFrame(rewritten, STATES_DDL)
    done = mirror_days(spark, store, DataDir(path=str(tmp_path)), SPEC, states, [day(2), day(3)])
    assert done.totals == {
        "states_offered": 3,
        "states_applied": 2,
        "keys_restored": 1,
        "keys_removed": 1,
    }
    assert done.applied_per_day == {day(3): 2}
    assert orders(store, ["v", "w", "x", "y", "z"]) == {
        "v": (2, 2, 2, midnight(day(3))),
        "w": (7, 7, 7, midnight(day(5))),
        "x": (1, 1, 1, midnight(day(1))),
        "y": (0, 0, 0, None),
        "z": (6, 6, 6, midnight(day(3))),
    }
    assert sorted(store.keys(TABLE)) == ["v", "w", "x", "z"]


def test_latest_per_key_takes_each_keys_newest_row_whole(spark: SparkSession) -> None:
    # a null feature in the newest row stays null; a string column (not fixed-width) too
    ddl = f"{SPEC.key} string, timestamp timestamp, n int, x double, label string"
    rows = [
        ("a", at(1), 1, 1.5, "first"),
        ("a", at(3), None, 2.5, None),
        ("a", at(2), 9, 9.5, "middle"),
        ("b", at(2), 4, None, "only"),
        ("c", at(5), 7, -1.0, "z"),
        ("c", at(4), 8, 99.0, "zz"),
    ]
    states = spark.createDataFrame(rows, ddl).repartition(3)
    latest = latest_per_key(states, SPEC)
    assert latest.columns == [SPEC.key, "timestamp", "n", "x", "label"]
    assert sorted(latest.collect()) == [
        ("a", at(3), None, 2.5, None),
        ("b", at(2), 4, None, "only"),
        ("c", at(5), 7, -1.0, "z"),
    ]


def test_duckdb_reads_each_keys_newest_stored_row(spark: SparkSession, tmp_path: Path) -> None:
    """`local_latest` against the rows each version stores: every range of days at every
    version, with nulls, NaN, -0.0, extreme values and keys absent from some days."""
    spec = feature_set_spec(DELAYS)
    table = tmp_path / layout.feature_set_table(spec.entity, spec.name)
    doubles = [None, 0.5, -0.0, float("nan"), 1e300, -2.25]
    random = Random(20200717)

    def value(dtype: str) -> object:
        if dtype in ("float", "double"):
            return random.choice(doubles)
        return random.choice([None, 0, 7, -(2**31)])

    stored: list[dict[int, list[tuple]]] = []  # per version: each day's rows
    records: dict[dt.date, DayRecord] = {}
    # three versions: days 1-6, then 3-9 replaced, then 2 replaced
    for first, last in [(1, 6), (3, 9), (2, 2)]:
        days = {
            d: [
                (key, at(d), *(value(a.dtype) for a in spec.aggregates))
                for key in random.sample(["a", "b", "c", "d", "e"], random.randint(1, 5))
            ]
            for d in range(first, last + 1)
        }
        stored.append({**(stored[-1] if stored else {}), **days})
        records.update({day(d): DayRecord(spec.version, rows=len(r)) for d, r in days.items()})
        storage.write(
            spark.createDataFrame(
                [r for rows in days.values() for r in rows], spark_ddl(state_schema(spec))
            ),
            table,
            days=records,
            based_on=storage.current_version(table),
            replace_where=storage.day_bounds("timestamp", day(first), day(last)),
        )
    columns = [a.column for a in spec.aggregates]
    # not a Delta table: left to Spark
    assert newest_states(tmp_path / "none", spec, day(1), day(9), columns, None) is None
    for as_of, rows_of_day in enumerate(stored):
        for first, last in [(1, 9), (2, 4), (5, 5), (7, 9), (10, 12)]:
            newest: dict[str, tuple] = {}
            for d in range(first, last + 1):  # days in order: a later row replaces
                for key, ts, *values in rows_of_day.get(d, []):
                    newest[key] = (key, calendar.timegm(ts.timetuple()), *values)
            batches = newest_states(table, spec, day(first), day(last), columns, as_of)
            assert batches is not None
            got = [_comparable(r) for b in batches for r in b.to_pylist()]
            assert sorted(got) == sorted(_comparable(r) for r in newest.values()), (as_of, first)


def _comparable(row: dict | tuple) -> tuple:
    """A row's values with each float as its repr: NaN equals NaN, -0.0 differs from 0.0."""
    values = row.values() if isinstance(row, dict) else row
    return tuple(repr(v) if isinstance(v, float) else v for v in values)
