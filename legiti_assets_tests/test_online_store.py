"""Online store behaviour, run against real SQLite and (if LEGITI_TEST_REDIS_URL is set) Redis."""

from __future__ import annotations

import itertools
import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from legiti_assets.catalog import ONLINE_TABLES
from legiti_assets.online_store import (
    FeatureSetTable,
    OnlineStore,
    RedisOnlineStore,
    SQLiteOnlineStore,
    open_online_store,
)

REDIS_URL = os.environ.get("LEGITI_TEST_REDIS_URL")
needs_redis = pytest.mark.skipif(
    not REDIS_URL,
    reason="set LEGITI_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/15) to run the Redis tests",
)

ORDERS = ONLINE_TABLES["user_orders"]
CHARGEBACKS = ONLINE_TABLES["user_chargebacks"]
BOTH = [ORDERS, CHARGEBACKS]

DAY_2019 = datetime(2019, 6, 1, tzinfo=UTC)
DAY_2020 = datetime(2020, 6, 1, tzinfo=UTC)
DAY_2020_NEXT = DAY_2020 + timedelta(days=1)

StoreFactory = Callable[..., OnlineStore]


def _flush_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=needs_redis)])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Factory of stores over one shared backing store (two calls see the same data)."""
    opened: list[OnlineStore] = []
    prefix = f"legiti_test_{uuid.uuid4().hex}"

    def factory(**kwargs: int) -> OnlineStore:
        if request.param == "sqlite":
            store: OnlineStore = SQLiteOnlineStore(tmp_path / "online.db", **kwargs)
        else:
            assert REDIS_URL
            store = RedisOnlineStore(REDIS_URL, key_prefix=prefix, **kwargs)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()
    if request.param == "redis":
        assert REDIS_URL
        _flush_prefix(REDIS_URL, prefix)


@pytest.fixture
def store(make_store: StoreFactory) -> OnlineStore:
    return make_store()


def orders_of(store: OnlineStore, key: str) -> tuple[tuple[int, ...], datetime | None]:
    features = store.get_features("user", [key], [ORDERS])[key]
    return tuple(features[c] for c in ORDERS.feature_columns), features["user_orders__timestamp"]


def test_latest_wins(store: OnlineStore) -> None:
    assert store.write_latest(ORDERS, [("111", DAY_2020, [1, 2, 3])]) == 1
    assert store.write_latest(ORDERS, [("111", DAY_2020_NEXT, [0, 4, 9])]) == 1
    assert orders_of(store, "111") == ((0, 4, 9), DAY_2020_NEXT)


def test_backfill_2019_after_2020_does_not_regress(store: OnlineStore) -> None:
    store.write_latest(ORDERS, [("111", DAY_2020, [1, 2, 3])])
    assert store.write_latest(ORDERS, [("111", DAY_2019, [7, 7, 7])]) == 0
    assert orders_of(store, "111") == ((1, 2, 3), DAY_2020)


def test_equal_timestamp_overwrites(store: OnlineStore) -> None:
    store.write_latest(ORDERS, [("111", DAY_2020, [1, 2, 3])])
    assert store.write_latest(ORDERS, [("111", DAY_2020, [5, 6, 7])]) == 1
    assert orders_of(store, "111") == ((5, 6, 7), DAY_2020)


def test_out_of_order_rows_within_and_across_batches(make_store: StoreFactory) -> None:
    store = make_store(batch_size=2)
    rows = [
        ("a", DAY_2020, [1, 1, 1]),
        ("a", DAY_2019, [2, 2, 2]),  # same batch, older: skipped
        ("b", DAY_2019, [3, 3, 3]),
        ("a", DAY_2020_NEXT, [4, 4, 4]),  # next batch, newer: applied
        ("b", DAY_2020, [5, 5, 5]),
        ("a", DAY_2019, [6, 6, 6]),  # last batch, older: skipped
    ]
    assert store.write_latest(ORDERS, iter(rows)) == 4
    assert orders_of(store, "a") == ((4, 4, 4), DAY_2020_NEXT)
    assert orders_of(store, "b") == ((5, 5, 5), DAY_2020)
    assert store.count(ORDERS) == 2


def test_unknown_key_reads_zeros_and_no_timestamp(store: OnlineStore) -> None:
    store.write_latest(ORDERS, [("known", DAY_2020, [1, 2, 3])])
    features = store.get_features("user", ["nobody"], BOTH)
    assert features == {
        "nobody": {
            **dict.fromkeys(ORDERS.feature_columns, 0),
            "user_orders__timestamp": None,
            **dict.fromkeys(CHARGEBACKS.feature_columns, 0),
            "user_chargebacks__timestamp": None,
        }
    }


def test_batch_read_keeps_request_order_and_mixes_feature_sets(store: OnlineStore) -> None:
    store.write_latest(ORDERS, [("k1", DAY_2020, [1, 2, 3]), ("k2", DAY_2019, [4, 5, 6])])
    store.write_latest(CHARGEBACKS, [("k2", DAY_2020, [0, 1, 1])])
    keys = ["k2", "missing", "k1", "k2"]
    features = store.get_features("user", keys, BOTH)
    assert list(features) == ["k2", "missing", "k1"]
    k2 = features["k2"]
    assert [k2[c] for c in ORDERS.feature_columns] == [4, 5, 6]
    assert [k2[c] for c in CHARGEBACKS.feature_columns] == [0, 1, 1]
    assert k2["user_orders__timestamp"] == DAY_2019
    assert k2["user_chargebacks__timestamp"] == DAY_2020
    k1 = features["k1"]
    assert [k1[c] for c in ORDERS.feature_columns] == [1, 2, 3]
    assert [k1[c] for c in CHARGEBACKS.feature_columns] == [0, 0, 0]
    assert k1["user_chargebacks__timestamp"] is None
    assert features["missing"]["user_orders__timestamp"] is None
    assert all(type(v) is int for v in k2.values() if not isinstance(v, datetime))
    assert store.get_features("user", [], BOTH) == {}


def test_feature_sets_subset(store: OnlineStore) -> None:
    store.write_latest(ORDERS, [("k1", DAY_2020, [1, 2, 3])])
    store.write_latest(CHARGEBACKS, [("k1", DAY_2020, [4, 5, 6])])
    features = store.get_features("user", ["k1"], [CHARGEBACKS])["k1"]
    assert features == {
        **dict(zip(CHARGEBACKS.feature_columns, [4, 5, 6], strict=True)),
        "user_chargebacks__timestamp": DAY_2020,
    }


def test_unknown_entity_is_rejected(store: OnlineStore) -> None:
    with pytest.raises(ValueError, match="unknown entity 'merchant'"):
        store.get_features("merchant", ["x"], BOTH)


def test_large_streamed_write(store: OnlineStore) -> None:
    n = 20_000
    rows = ((f"{i:011d}", DAY_2020, (i % 3, i % 7, i % 30)) for i in range(n))
    assert store.write_latest(ORDERS, rows) == n
    assert store.count(ORDERS) == n
    keys = [f"{i:011d}" for i in (0, 1, 12_345, n - 1)]
    features = store.get_features("user", keys, [ORDERS])
    for key in keys:
        i = int(key)
        assert [features[key][c] for c in ORDERS.feature_columns] == [i % 3, i % 7, i % 30]
    # A 1000-key batch read spans several SQLite IN chunks.
    many = [f"{i:011d}" for i in range(0, n, 20)]
    assert [
        f[ORDERS.feature_columns[1]] for f in store.get_features("user", many, [ORDERS]).values()
    ] == [i % 7 for i in range(0, n, 20)]


HOSTILE_KEYS = [
    "1' OR '1'='1",
    "x'); DROP TABLE user_orders; --",
    '"; DELETE FROM user_orders; --',
    "legiti:user_orders:*",
    "*",
    "",
    "  padded  ",
    "çpf-ünicode-✓",
    "%s %(cpf)s ?",
]


def test_hostile_keys_round_trip_verbatim(store: OnlineStore) -> None:
    store.write_latest(
        ORDERS, [(k, DAY_2020, [i, i + 1, i + 2]) for i, k in enumerate(HOSTILE_KEYS)]
    )
    features = store.get_features("user", [*HOSTILE_KEYS, "1"], [ORDERS])
    assert list(features) == [*HOSTILE_KEYS, "1"]
    for i, key in enumerate(HOSTILE_KEYS):
        assert [features[key][c] for c in ORDERS.feature_columns] == [i, i + 1, i + 2]
    assert features["1"]["user_orders__timestamp"] is None
    assert store.count(ORDERS) == len(HOSTILE_KEYS)


def test_latest_timestamp_and_count(store: OnlineStore) -> None:
    assert store.latest_timestamp(ORDERS) is None
    assert store.count(ORDERS) == 0
    store.write_latest(ORDERS, [("a", DAY_2020_NEXT, [1, 1, 1]), ("b", DAY_2019, [1, 1, 1])])
    store.write_latest(ORDERS, [("a", DAY_2019, [1, 1, 1]), ("b", DAY_2020, [2, 2, 2])])
    assert store.latest_timestamp(ORDERS) == DAY_2020_NEXT
    assert store.count(ORDERS) == 2
    assert store.latest_timestamp(CHARGEBACKS) is None


def test_timestamps_are_normalised_to_utc(store: OnlineStore) -> None:
    sao_paulo = timezone(timedelta(hours=-3))
    store.write_latest(ORDERS, [("naive", datetime(2020, 6, 1), [1, 1, 1])])
    store.write_latest(ORDERS, [("aware", datetime(2020, 5, 31, 21, tzinfo=sao_paulo), [1, 1, 1])])
    for key in ("naive", "aware"):
        ts = orders_of(store, key)[1]
        assert ts == DAY_2020
        assert ts is not None and ts.utcoffset() == timedelta(0)
    # The same instant in another zone is an equal timestamp, so it overwrites.
    store.write_latest(ORDERS, [("naive", datetime(2020, 5, 31, 21, tzinfo=sao_paulo), [2, 2, 2])])
    assert orders_of(store, "naive") == ((2, 2, 2), DAY_2020)


def test_accepts_pandas_and_numpy_values(store: OnlineStore) -> None:
    """What a Spark ``toPandas()`` hands over: naive UTC Timestamps, numpy ints, float counts."""
    frame = pd.DataFrame(
        {
            "cpf": ["01234567890", "00000000001"],
            "timestamp": pd.to_datetime(["2020-06-01", "2020-06-02"]),
            "c3": np.array([1, 0], dtype=np.int64),
            "c7": [2.0, 1.0],  # a nullable column that pandas made float
            "c30": np.array([3, 4], dtype=np.int32),
        }
    )
    rows = (
        (cpf, ts, (c3, c7, c30))
        for cpf, ts, c3, c7, c30 in frame.itertuples(index=False, name=None)
    )
    assert store.write_latest(ORDERS, rows) == 2
    assert orders_of(store, "01234567890") == ((1, 2, 3), DAY_2020)
    assert orders_of(store, "00000000001") == ((0, 1, 4), DAY_2020_NEXT)


@pytest.mark.parametrize(
    "bad_row",
    [
        ("k", DAY_2020, [1, 2]),  # too few values
        (12345678901, DAY_2020, [1, 2, 3]),  # int cpf: leading zeros already lost
        ("k", "2020-06-01", [1, 2, 3]),  # not a datetime
        ("k", DAY_2020, [1, None, 3]),  # null count
        ("k", DAY_2020, [1, float("nan"), 3]),  # null count from pandas
        ("k", DAY_2020, [1, 2.5, 3]),  # not a count
        ("k", DAY_2020, [1, "2", 3]),  # not a number
    ],
)
def test_invalid_row_rejects_its_whole_batch(make_store: StoreFactory, bad_row: tuple) -> None:
    store = make_store(batch_size=3)
    rows = [(f"ok{i}", DAY_2020, [i, i, i]) for i in range(5)]
    rows.insert(4, bad_row)  # second batch: ok3, bad, ok4
    with pytest.raises(ValueError, match="invalid row for user_orders"):
        store.write_latest(ORDERS, rows)
    assert store.count(ORDERS) == 3
    features = store.get_features("user", ["ok2", "ok3", "ok4"], [ORDERS])
    assert features["ok2"]["user_orders__timestamp"] == DAY_2020
    assert features["ok3"]["user_orders__timestamp"] is None
    assert features["ok4"]["user_orders__timestamp"] is None


def test_data_survives_reopening(make_store: StoreFactory) -> None:
    writer = make_store()
    writer.write_latest(ORDERS, [("k", DAY_2020, [3, 2, 1])])
    writer.close()
    reader = make_store()
    assert orders_of(reader, "k") == ((3, 2, 1), DAY_2020)


def test_concurrent_writers_on_separate_connections(make_store: StoreFactory) -> None:
    """Two writers race on the same keys; busy waits (no 'database is locked') and latest wins."""
    stores = [make_store(batch_size=100), make_store(batch_size=100)]
    days = [DAY_2020, DAY_2020_NEXT]
    errors: list[BaseException] = []

    def write(store: OnlineStore, day: datetime) -> None:
        try:
            store.write_latest(ORDERS, ((f"k{i}", day, [day.day] * 3) for i in range(3000)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=pair) for pair in zip(stores, days, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert stores[0].count(ORDERS) == 3000
    features = stores[0].get_features("user", [f"k{i}" for i in range(3000)], [ORDERS])
    assert {f["user_orders__timestamp"] for f in features.values()} == {DAY_2020_NEXT}


_table_names = (f"prop_table_{i}" for i in itertools.count())


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    writes=st.lists(
        st.lists(
            st.tuples(
                st.sampled_from(["a", "b", "c"]),
                st.integers(min_value=0, max_value=4),  # day offset
                st.integers(min_value=0, max_value=1000),
            ),
            max_size=8,
        ),
        max_size=5,
    )
)
def test_matches_latest_wins_model(
    store: OnlineStore, writes: list[list[tuple[str, int, int]]]
) -> None:
    """Any sequence of write calls ends in the state of a simple latest-wins model."""
    table = FeatureSetTable(next(_table_names), "cpf", ("n",))
    model: dict[str, tuple[int, int]] = {}
    for call in writes:
        expected_applied = 0
        for key, day, value in call:
            if key not in model or model[key][0] <= day:
                model[key] = (day, value)
                expected_applied += 1
        rows = [(key, DAY_2019 + timedelta(days=day), [value]) for key, day, value in call]
        assert store.write_latest(table, rows) == expected_applied
    features = store.get_features("user", ["a", "b", "c"], [table])
    for key in ("a", "b", "c"):
        if key in model:
            day, value = model[key]
            assert features[key] == {
                "n": value,
                f"{table.name}__timestamp": DAY_2019 + timedelta(days=day),
            }
        else:
            assert features[key] == {"n": 0, f"{table.name}__timestamp": None}
    assert store.count(table) == len(model)


# --- SQLite specifics -----------------------------------------------------------------------


def test_sqlite_failure_mid_batch_rolls_back(tmp_path: Path) -> None:
    """A row that SQLite itself rejects (int64 overflow) mid-executemany undoes the whole batch."""
    with SQLiteOnlineStore(tmp_path / "s.db", batch_size=10) as store:
        store.write_latest(ORDERS, [("old", DAY_2019, [1, 1, 1])])
        rows = [(f"k{i}", DAY_2020, [1, 1, 1]) for i in range(5)]
        rows += [("old", DAY_2020, [9, 9, 9]), ("huge", DAY_2020, [2**63, 0, 0])]
        with pytest.raises(OverflowError):
            store.write_latest(ORDERS, rows)
        assert store.count(ORDERS) == 1
        assert orders_of(store, "old") == ((1, 1, 1), DAY_2019)
        # The connection is usable afterwards.
        assert store.write_latest(ORDERS, rows[:5]) == 5


def test_sqlite_process_crash_mid_write_leaves_whole_batches(tmp_path: Path) -> None:
    """Kill the writer process inside the third batch's executemany: two whole batches remain."""
    db = tmp_path / "crash.db"
    script = f"""
import os
from datetime import datetime, timezone
from legiti_assets.online_store import FeatureSetTable, SQLiteOnlineStore
table = FeatureSetTable("user_orders", "cpf", ("n",))
store = SQLiteOnlineStore({str(db)!r}, batch_size=1000)
armed = False
steps = 0
def rows():
    global armed
    for i in range(5000):
        # Row 2999 completes the third batch, which is written right after it is drawn.
        armed = i == 2999
        yield (f"k{{i}}", datetime(2020, 1, 2, tzinfo=timezone.utc), [i])
def die():
    global steps
    if armed:
        steps += 1
        if steps == 5:
            os._exit(17)
store._conn.set_progress_handler(die, 100)
store.write_latest(table, rows())
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 17, proc.stderr
    table = FeatureSetTable("user_orders", "cpf", ("n",))
    with SQLiteOnlineStore(db) as store:
        assert store.count(table) == 2000
        features = store.get_features("user", ["k1999", "k2000", "k2998"], [table])
        assert [f["n"] for f in features.values()] == [1999, 0, 0]


def test_sqlite_rejects_table_with_missing_columns(tmp_path: Path) -> None:
    with SQLiteOnlineStore(tmp_path / "s.db") as store:
        store.write_latest(FeatureSetTable("user_orders", "cpf", ("a",)), [("k", DAY_2020, [1])])
        evolved = FeatureSetTable("user_orders", "cpf", ("a", "b"))
        with pytest.raises(ValueError, match=r"lacks columns \['b'\]"):
            store.get_features("user", ["k"], [evolved])


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    with SQLiteOnlineStore(tmp_path / "s.db") as store:
        store.write_latest(ORDERS, [("k", DAY_2020, [1, 2, 3])])
    assert (tmp_path / "s.db").exists()
    conn = sqlite3.connect(tmp_path / "s.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()


# --- Validation and URLs --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["user-orders", "User", "1table", "x; DROP TABLE y", 'o"rders', "", "a b"]
)
def test_feature_set_names_are_validated(name: str) -> None:
    with pytest.raises(ValueError, match="invalid feature set name"):
        FeatureSetTable(name, "cpf", ("n",))
    with pytest.raises(ValueError, match="invalid feature column"):
        FeatureSetTable("ok", "cpf", (name,))


def test_feature_set_rejects_reserved_or_duplicate_columns() -> None:
    for columns in [("timestamp",), ("cpf",), ("a", "a"), ()]:
        with pytest.raises(ValueError):
            FeatureSetTable("ok", "cpf", columns)


def test_open_sqlite_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cases = {
        "sqlite:///rel/dir/a.db": tmp_path / "rel/dir/a.db",
        f"sqlite:///{tmp_path}/abs.db": tmp_path / "abs.db",
        "plain.db": tmp_path / "plain.db",
        str(tmp_path / "plain_abs.db"): tmp_path / "plain_abs.db",
    }
    for url, path in cases.items():
        with open_online_store(url) as store:
            assert isinstance(store, SQLiteOnlineStore)
            store.write_latest(ORDERS, [("k", DAY_2020, [1, 2, 3])])
        assert path.exists(), url


@needs_redis
def test_open_redis_url() -> None:
    assert REDIS_URL
    prefix = f"legiti_test_{uuid.uuid4().hex}"
    with open_online_store(REDIS_URL, redis_key_prefix=prefix) as store:
        assert isinstance(store, RedisOnlineStore)
        store.ping()
        store.write_latest(ORDERS, [("k", DAY_2020, [1, 2, 3])])
        assert store.state_key(ORDERS, "k") == f"{prefix}:user_orders:k"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        assert client.hgetall(f"{prefix}:user_orders:k") == {
            b"timestamp": str(int(DAY_2020.timestamp())).encode(),
            b"cpf_orders__count_over_3_days_rolling_windows": b"1",
            b"cpf_orders__count_over_7_days_rolling_windows": b"2",
            b"cpf_orders__count_over_30_days_rolling_windows": b"3",
        }
    finally:
        client.close()
        _flush_prefix(REDIS_URL, prefix)


@pytest.mark.parametrize(
    "url", ["", "   ", "mysql://u@h/db", "sqlite://relative.db", "sqlite:///", "http://x"]
)
def test_bad_urls_are_rejected(url: str) -> None:
    with pytest.raises(ValueError):
        open_online_store(url)


@pytest.mark.parametrize("prefix", ["", "a:b", "a*", "with space"])
def test_bad_redis_prefix_is_rejected(prefix: str) -> None:
    with pytest.raises(ValueError, match="invalid Redis key prefix"):
        RedisOnlineStore("redis://127.0.0.1:1/0", key_prefix=prefix)
