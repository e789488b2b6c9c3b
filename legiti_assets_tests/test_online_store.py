"""Online store behaviour, run against real SQLite and (if LEGITI_TEST_REDIS_URL is set) Redis."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import pickle
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from legiti_assets.catalog import ONLINE_TABLES
from legiti_assets.online import (
    COUNT,
    FLOAT,
    INT,
    FeatureSetTable,
    Loaded,
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
    with pytest.raises(ValueError, match="is of entity 'user', not 'merchant'"):
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


# --- Typed columns ---------------------------------------------------------------------------

TYPED = FeatureSetTable(
    "user_amounts", "cpf", ("n_orders", "max_amount", "avg_amount"), (COUNT, INT, FLOAT)
)


def assert_exact(actual: Any, expected: Any) -> None:
    """Same types and values, item by item in tuples; floats compared bit for bit."""
    assert type(actual) is type(expected), (actual, expected)
    if isinstance(expected, tuple):
        for actual_item, expected_item in zip(actual, expected, strict=True):
            assert_exact(actual_item, expected_item)
    elif isinstance(expected, float):
        assert actual.hex() == expected.hex(), (actual, expected)
    else:
        assert actual == expected


def typed_of(store: OnlineStore, key: str) -> tuple[Any, ...]:
    features = store.get_features("user", [key], [TYPED])[key]
    return tuple(features[c] for c in TYPED.feature_columns)


# (written values, values read back) per key.
TYPED_CASES: dict[str, tuple[list[Any], tuple[Any, ...]]] = {
    "plain": ([3, 7, 0.1], (3, 7, 0.1)),
    "nulls": ([0, None, None], (0, None, None)),
    "tiny": ([1, -5, 1e-300], (1, -5, 1e-300)),
    "negative": ([2, 0, -2.5], (2, 0, -2.5)),
    "integral_float": ([1.0, 4.0, 3.0], (1, 4, 3.0)),
    "int_into_float": ([0, 2, 3], (0, 2, 3.0)),
    "numpy": (
        [np.int64(4), np.int32(-7), np.float64(0.1)],
        (4, -7, 0.1),
    ),
    "numpy_narrow": (
        [np.int8(1), np.float32(6.0), np.float32(0.1)],
        (1, 6, float(np.float32(0.1))),
    ),
    "extremes": ([2**62, -(2**63), 5e-324], (2**62, -(2**63), 5e-324)),
    "huge_float": ([0, None, -1.7976931348623157e308], (0, None, -1.7976931348623157e308)),
    "decimal": ([Decimal("5"), Decimal("8"), Decimal("2.5")], (5, 8, 2.5)),
    "negative_zero": ([0, 0, -0.0], (0, 0, 0.0)),  # SQLite cannot keep the sign
}


def test_typed_feature_set_defaults_and_validation() -> None:
    assert TYPED.no_state_values == (0, None, None)
    counts = FeatureSetTable("t", "cpf", ["a", "b"])
    assert counts.feature_types == (COUNT, COUNT)
    assert counts.no_state_values == (0, 0)
    assert counts == FeatureSetTable("t", "cpf", ("a", "b"), [COUNT, COUNT])
    assert hash(counts) == hash(FeatureSetTable("t", "cpf", ("a", "b"), (COUNT, COUNT)))
    for types in [(COUNT,), (COUNT, INT, FLOAT), (COUNT, "double"), (INT, None), "count"]:
        with pytest.raises(ValueError, match="feature_types"):
            FeatureSetTable("t", "cpf", ("a", "b"), types)  # type: ignore[arg-type]


def test_typed_values_round_trip_exactly(store: OnlineStore) -> None:
    rows = [(key, DAY_2020, written) for key, (written, _) in TYPED_CASES.items()]
    assert store.write_latest(TYPED, rows) == len(rows)
    features = store.get_features("user", list(TYPED_CASES), [TYPED])
    for key, (_, expected) in TYPED_CASES.items():
        assert_exact(tuple(features[key][c] for c in TYPED.feature_columns), expected)
        assert features[key]["user_amounts__timestamp"] == DAY_2020


def test_typed_no_state_defaults(store: OnlineStore) -> None:
    store.write_latest(TYPED, [("known", DAY_2020, [1, 2, 0.5])])
    features = store.get_features("user", ["nobody", "known"], [TYPED, ORDERS])
    nobody = features["nobody"]
    assert nobody == {
        "n_orders": 0,
        "max_amount": None,
        "avg_amount": None,
        "user_amounts__timestamp": None,
        **dict.fromkeys(ORDERS.feature_columns, 0),
        "user_orders__timestamp": None,
    }
    assert_exact(tuple(nobody[c] for c in TYPED.feature_columns), (0, None, None))
    assert_exact(typed_of(store, "known"), (1, 2, 0.5))
    assert features["known"]["user_orders__timestamp"] is None


def test_nan_becomes_null(store: OnlineStore) -> None:
    rows = [
        ("py", DAY_2020, [1, float("nan"), float("nan")]),
        ("numpy", DAY_2020, [2, np.float64("nan"), np.float32("nan")]),
        ("decimal", DAY_2020, [3, Decimal("NaN"), Decimal("NaN")]),
    ]
    assert store.write_latest(TYPED, rows) == 3
    for key, count in [("py", 1), ("numpy", 2), ("decimal", 3)]:
        assert_exact(typed_of(store, key), (count, None, None))


def test_typed_values_from_pandas(store: OnlineStore) -> None:
    """An int column with nulls reaches pandas as float64 with NaN."""
    frame = pd.DataFrame(
        {
            "cpf": ["01234567890", "00000000001"],
            "timestamp": pd.to_datetime(["2020-06-01", "2020-06-02"]),
            "n_orders": np.array([2, 0], dtype=np.int64),
            "max_amount": [250.0, np.nan],
            "avg_amount": [125.25, np.nan],
        }
    )
    rows = ((cpf, ts, values) for cpf, ts, *values in frame.itertuples(index=False, name=None))
    assert store.write_latest(TYPED, rows) == 2
    assert_exact(typed_of(store, "01234567890"), (2, 250, 125.25))
    assert_exact(typed_of(store, "00000000001"), (0, None, None))


def test_null_and_value_overwrite_each_other(store: OnlineStore) -> None:
    store.write_latest(TYPED, [("k", DAY_2019, [1, 10, 2.5])])
    store.write_latest(TYPED, [("k", DAY_2020, [0, None, None])])
    assert_exact(typed_of(store, "k"), (0, None, None))
    store.write_latest(TYPED, [("k", DAY_2020_NEXT, [4, 0, 0.0])])
    assert_exact(typed_of(store, "k"), (4, 0, 0.0))
    # A stale null does not erase a newer value.
    assert store.write_latest(TYPED, [("k", DAY_2019, [0, None, None])]) == 0
    assert_exact(typed_of(store, "k"), (4, 0, 0.0))


@pytest.mark.parametrize(
    ("bad_values", "reason"),
    [
        ([None, 1, 1.5], "n_orders: a count cannot be null"),
        ([float("nan"), 1, 1.5], "n_orders: a count cannot be null"),
        (["3", 1, 1.5], "n_orders: expected a number, got str"),
        ([True, 1, 1.5], "n_orders: expected a number, got bool"),
        ([1, "4", 1.5], "max_amount: expected a number, got str"),
        ([1, 2.5, 1.5], "max_amount: 2.5 is not an integer"),
        ([1, np.bool_(True), 1.5], "max_amount: expected a number, got bool"),
        ([1, float("inf"), 1.5], "max_amount: cannot convert float infinity"),
        ([1, 1, "0.1"], "avg_amount: expected a number, got str"),
        ([1, 1, b"0.1"], "avg_amount: expected a number, got bytes"),
        ([1, 1, False], "avg_amount: expected a number, got bool"),
        ([1, 1, float("-inf")], "avg_amount: -inf is not finite"),
        ([1, 1, 10**400], "avg_amount: int too large to convert to float"),
        ([1, 1, 1j], "avg_amount: expected a number, got complex"),
    ],
)
def test_invalid_typed_value_rejects_its_whole_batch(
    make_store: StoreFactory, bad_values: list[Any], reason: str
) -> None:
    store = make_store(batch_size=3)
    rows = [(f"ok{i}", DAY_2020, [i, None, 0.5]) for i in range(5)]
    rows.insert(4, ("bad", DAY_2020, bad_values))  # second batch: ok3, bad, ok4
    with pytest.raises(ValueError, match="invalid row for user_amounts") as excinfo:
        store.write_latest(TYPED, rows)
    assert "'bad'" in str(excinfo.value)
    assert reason in str(excinfo.value)
    assert store.count(TYPED) == 3
    features = store.get_features("user", ["ok2", "ok3", "bad"], [TYPED])
    assert features["ok2"]["user_amounts__timestamp"] == DAY_2020
    assert features["ok3"]["user_amounts__timestamp"] is None
    assert features["bad"]["user_amounts__timestamp"] is None


_float_keys = (f"f{i}" for i in itertools.count())


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    value=st.none()
    | st.floats(allow_infinity=False)
    | st.floats(width=32, allow_infinity=False).map(np.float32)
)
def test_any_float_round_trips_exactly(store: OnlineStore, value: Any) -> None:
    key = next(_float_keys)
    store.write_latest(TYPED, [(key, DAY_2020, [0, None, value])])
    read = typed_of(store, key)[2]
    if value is None or math.isnan(value):
        assert read is None
    else:
        # -0.0 is stored as 0.0.
        assert_exact(read, float(value) + 0.0)


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
from legiti_assets.online import FeatureSetTable, SQLiteOnlineStore
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


def test_sqlite_column_types(tmp_path: Path) -> None:
    with SQLiteOnlineStore(tmp_path / "s.db") as store:
        store.write_latest(TYPED, [("k", DAY_2020, [1, None, 3.0])])
    conn = sqlite3.connect(tmp_path / "s.db")
    try:
        info = conn.execute('PRAGMA table_info("user_amounts")').fetchall()
        assert [(name, sql_type, not_null) for _, name, sql_type, not_null, *_ in info] == [
            ("cpf", "TEXT", 1),
            ("timestamp", "INTEGER", 1),
            ("n_orders", "INTEGER", 1),
            ("max_amount", "INTEGER", 0),
            ("avg_amount", "REAL", 0),
        ]
        assert conn.execute(
            "SELECT typeof(n_orders), typeof(max_amount), typeof(avg_amount) FROM user_amounts"
        ).fetchone() == ("integer", "null", "real")
    finally:
        conn.close()


def test_sqlite_rejects_table_with_retyped_columns(tmp_path: Path) -> None:
    with SQLiteOnlineStore(tmp_path / "s.db") as store:
        store.write_latest(FeatureSetTable("t", "cpf", ("a", "b")), [("k", DAY_2020, [1, 2])])
        for types in [(COUNT, FLOAT), (COUNT, INT), (FLOAT, COUNT)]:
            retyped = FeatureSetTable("t", "cpf", ("a", "b"), types)
            with pytest.raises(ValueError, match="of another type"):
                store.get_features("user", ["k"], [retyped])


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


@needs_redis
def test_redis_typed_encoding() -> None:
    """Nulls are "" and floats their repr; a missing field is still an error, unlike ""."""
    assert REDIS_URL
    prefix = f"legiti_test_{uuid.uuid4().hex}"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        with RedisOnlineStore(REDIS_URL, key_prefix=prefix) as store:
            store.write_latest(
                TYPED,
                [
                    ("a", DAY_2020, [np.int64(2), None, 0.1]),
                    ("b", DAY_2020, [0, -3, 3.0]),
                    ("c", DAY_2020, [1, 7, 1e-300]),
                ],
            )
            hashes = {k: client.hgetall(store.state_key(TYPED, k)) for k in "abc"}
            ts = str(int(DAY_2020.timestamp())).encode()
            assert hashes == {
                "a": {
                    b"timestamp": ts,
                    b"n_orders": b"2",
                    b"max_amount": b"",
                    b"avg_amount": b"0.1",
                },
                "b": {
                    b"timestamp": ts,
                    b"n_orders": b"0",
                    b"max_amount": b"-3",
                    b"avg_amount": b"3.0",
                },
                "c": {
                    b"timestamp": ts,
                    b"n_orders": b"1",
                    b"max_amount": b"7",
                    b"avg_amount": b"1e-300",
                },
            }
            client.hdel(store.state_key(TYPED, "b"), "max_amount")
            with pytest.raises(ValueError, match="lacks some of"):
                store.get_features("user", ["b"], [TYPED])
            # The column was an INT and is now read as a COUNT: a stored null cannot be a count.
            as_counts = FeatureSetTable(TYPED.name, "cpf", TYPED.feature_columns, (COUNT,) * 3)
            with pytest.raises(ValueError, match="does not match the types"):
                store.get_features("user", ["a"], [as_counts])
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


# --- Replacing and removing states (an online store that mirrors history) ------------------


def test_replace_until_takes_back_states_not_after_it(store: OnlineStore) -> None:
    store.write_latest(ORDERS, [("a", DAY_2020_NEXT, [1, 1, 1]), ("b", DAY_2020_NEXT, [2, 2, 2])])
    # a rewrite of days up to DAY_2020_NEXT: a's older state replaces the newer one
    applied = store.write_latest(ORDERS, [("a", DAY_2019, [7, 7, 7])], replace_until=DAY_2020_NEXT)
    assert applied == 1
    assert orders_of(store, "a") == ((7, 7, 7), DAY_2019)
    # a rewrite of days up to DAY_2020 leaves b's state of the day after alone
    assert store.write_latest(ORDERS, [("b", DAY_2019, [0, 0, 0])], replace_until=DAY_2020) == 0
    assert orders_of(store, "b") == ((2, 2, 2), DAY_2020_NEXT)
    assert store.latest_timestamp(ORDERS) == DAY_2020_NEXT


def test_keys_by_state_timestamp(store: OnlineStore) -> None:
    store.write_latest(
        ORDERS,
        [("a", DAY_2019, [1, 1, 1]), ("b", DAY_2020, [1, 1, 1]), ("c", DAY_2020_NEXT, [1, 1, 1])],
    )
    assert sorted(store.keys(ORDERS)) == ["a", "b", "c"]
    assert sorted(store.keys(ORDERS, since=DAY_2020)) == ["b", "c"]
    assert sorted(store.keys(ORDERS, until=DAY_2020)) == ["a", "b"]
    assert store.keys(ORDERS, since=DAY_2020, until=DAY_2020) == ["b"]
    assert store.keys(CHARGEBACKS) == []


def test_delete_removes_only_states_inside_the_range(store: OnlineStore) -> None:
    store.write_latest(ORDERS, [("a", DAY_2019, [1, 1, 1]), ("b", DAY_2020_NEXT, [2, 2, 2])])
    # b was written after the range by a concurrent run: it stays; "nope" was never stored
    removed = store.delete(ORDERS, ["a", "b", "nope"], since=DAY_2019, until=DAY_2020)
    assert removed == 1
    assert orders_of(store, "a") == ((0, 0, 0), None)
    assert orders_of(store, "b") == ((2, 2, 2), DAY_2020_NEXT)
    assert store.count(ORDERS) == 1
    assert store.delete(ORDERS, ["b"], since=DAY_2020_NEXT, until=DAY_2020_NEXT) == 1
    assert store.count(ORDERS) == 0
    assert store.latest_timestamp(ORDERS) is None
    assert store.delete(ORDERS, [], since=DAY_2019, until=DAY_2020) == 0


_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("write"),
            st.lists(
                st.tuples(st.sampled_from("abc"), st.integers(0, 5), st.integers(0, 9)), max_size=4
            ),
            st.none() | st.integers(0, 5),
        ),
        st.tuples(
            st.just("delete"),
            st.lists(st.sampled_from("abc"), max_size=3),
            st.tuples(st.integers(0, 5), st.integers(0, 5)),
        ),
        st.tuples(
            st.just("load"),  # at most one state per key
            st.dictionaries(
                st.sampled_from("abc"), st.tuples(st.integers(0, 5), st.integers(0, 9)), max_size=3
            ),
            st.none() | st.integers(0, 5),
        ),
    ),
    max_size=6,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_ops)
def test_matches_model_with_replacing_and_removing(store: OnlineStore, ops: list) -> None:
    """Writes and loads with and without a replace bound, and range deletes, match a simple
    model; keys, count and newest timestamp agree with it after every step."""
    table = FeatureSetTable(next(_table_names), "cpf", ("n",))
    model: dict[str, tuple[int, int]] = {}

    def at(day: int) -> datetime:
        return DAY_2019 + timedelta(days=day)

    for op, items, bound in ops:
        if op == "write":
            expected = 0
            for key, day, value in items:
                stored = model.get(key)
                if stored is None or stored[0] <= day or (bound is not None and stored[0] <= bound):
                    model[key] = (day, value)
                    expected += 1
            rows = [(key, at(day), [value]) for key, day, value in items]
            until = None if bound is None else at(bound)
            assert store.write_latest(table, rows, replace_until=until) == expected
        elif op == "load":
            offered: dict[datetime, int] = {}
            applied: dict[datetime, int] = {}
            for key, (day, value) in items.items():
                offered[at(day)] = offered.get(at(day), 0) + 1
                applied.setdefault(at(day), 0)
                stored = model.get(key)
                if stored is None or stored[0] <= day or (bound is not None and stored[0] <= bound):
                    model[key] = (day, value)
                    applied[at(day)] += 1
            rows = [(key, at(day), [value]) for key, (day, value) in items.items()]
            until = None if bound is None else at(bound)
            loaded = store.load(table, [states_of(table, rows)], replace_until=until)
            assert loaded == Loaded(dict(sorted(offered.items())), dict(sorted(applied.items())))
        else:
            low, high = bound
            gone = {k for k in items if k in model and low <= model[k][0] <= high}
            assert store.delete(table, items, since=at(low), until=at(high)) == len(gone)
            for key in gone:
                del model[key]
        assert sorted(store.keys(table)) == sorted(model)
        assert sorted(store.keys(table, since=at(2), until=at(3))) == sorted(
            k for k, (day, _) in model.items() if 2 <= day <= 3
        )
        assert store.count(table) == len(model)
        newest = max((day for day, _ in model.values()), default=None)
        assert store.latest_timestamp(table) == (None if newest is None else at(newest))
    features = store.get_features("user", ["a", "b", "c"], [table])
    for key in "abc":
        day_value = model.get(key)
        assert features[key] == (
            {"n": day_value[1], f"{table.name}__timestamp": at(day_value[0])}
            if day_value
            else {"n": 0, f"{table.name}__timestamp": None}
        )


@needs_redis
def test_redis_store_written_before_the_index_gets_one() -> None:
    assert REDIS_URL
    prefix = f"legiti_test_{uuid.uuid4().hex}"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        # what the previous release wrote: state hashes plus count/latest counters
        for key, ts in (("a", DAY_2019), ("b:c", DAY_2020)):
            client.hset(
                f"{prefix}:user_orders:{key}",
                mapping={
                    "timestamp": int(ts.timestamp()),
                    **dict.fromkeys(ORDERS.feature_columns, 1),
                },
            )
        client.set(f"{prefix}:#meta:user_orders:count", 2)
        client.set(f"{prefix}:#meta:user_orders:latest", int(DAY_2020.timestamp()))
        store = RedisOnlineStore(REDIS_URL, key_prefix=prefix)
        assert sorted(store.keys(ORDERS)) == ["a", "b:c"]
        assert store.count(ORDERS) == 2
        assert store.latest_timestamp(ORDERS) == DAY_2020
        assert not client.exists(f"{prefix}:#meta:user_orders:count")
        store.close()
    finally:
        _flush_prefix(REDIS_URL, prefix)
        client.close()


def test_mirrored_days_are_recorded_per_feature_set(make_store: StoreFactory) -> None:
    store = make_store()
    assert store.mirrored(ORDERS) == {}
    store.record_mirrored(ORDERS, {"2020-06-01": "v1/a", "2020-06-02": "v1/b"})
    store.record_mirrored(ORDERS, {"2020-06-02": "v1/c"})
    store.record_mirrored(CHARGEBACKS, {})
    assert make_store().mirrored(ORDERS) == {"2020-06-01": "v1/a", "2020-06-02": "v1/c"}
    assert store.mirrored(CHARGEBACKS) == {}


# --- Bulk loads: Arrow batches of states, what the online assets write ----------------------


def states_of(
    table: FeatureSetTable, rows: list[tuple[str, datetime, list[Any]]], types: Any = None
) -> pa.RecordBatch:
    """A batch as Spark hands it over: a string key, epoch seconds, one column per feature
    (int64 for COUNT and INT, float64 for FLOAT unless `types` says otherwise)."""
    types = types or [pa.float64() if t == FLOAT else pa.int64() for t in table.feature_types]
    columns = [list(column) for column in zip(*(values for _, _, values in rows), strict=True)]
    return pa.RecordBatch.from_arrays(
        [
            pa.array([key for key, _, _ in rows], pa.string()),
            pa.array([int(ts.timestamp()) for _, ts, _ in rows], pa.int64()),
            *(
                pa.array(values, kind)
                for values, kind in zip(columns or [[]] * len(types), types, strict=True)
            ),
        ],
        names=[table.key, "timestamp", *table.feature_columns],
    )


def test_load_never_regresses_and_counts_per_timestamp(store: OnlineStore) -> None:
    store.write_latest(ORDERS, [("newer", DAY_2020_NEXT, [9, 9, 9]), ("older", DAY_2019, [8] * 3)])
    batch = states_of(
        ORDERS,
        [
            ("newer", DAY_2020, [1, 1, 1]),  # older than the stored state: skipped
            ("older", DAY_2020, [2, 2, 2]),
            ("new", DAY_2019, [3, 3, 3]),
            ("same", DAY_2020, [4, 4, 4]),
        ],
    )
    assert store.load(ORDERS, [batch]) == Loaded(
        offered={DAY_2019: 1, DAY_2020: 3}, applied={DAY_2019: 1, DAY_2020: 2}
    )
    assert orders_of(store, "newer") == ((9, 9, 9), DAY_2020_NEXT)
    assert orders_of(store, "older") == ((2, 2, 2), DAY_2020)
    assert orders_of(store, "new") == ((3, 3, 3), DAY_2019)
    # an equal timestamp overwrites: re-loading a day replaces it
    again = states_of(ORDERS, [("same", DAY_2020, [5, 5, 5])])
    assert store.load(ORDERS, [again]) == Loaded({DAY_2020: 1}, {DAY_2020: 1})
    assert orders_of(store, "same") == ((5, 5, 5), DAY_2020)
    assert store.count(ORDERS) == 4
    assert store.latest_timestamp(ORDERS) == DAY_2020_NEXT


def test_load_with_replace_until_takes_back_states_not_after_it(store: OnlineStore) -> None:
    store.write_latest(ORDERS, [("a", DAY_2020_NEXT, [1, 1, 1]), ("b", DAY_2020_NEXT, [2, 2, 2])])
    # a rewrite of days up to DAY_2020_NEXT: a's older state replaces the newer one
    older_a = states_of(ORDERS, [("a", DAY_2019, [7, 7, 7])])
    assert store.load(ORDERS, [older_a], replace_until=DAY_2020_NEXT) == Loaded(
        {DAY_2019: 1}, {DAY_2019: 1}
    )
    assert orders_of(store, "a") == ((7, 7, 7), DAY_2019)
    # a rewrite of days up to DAY_2020 leaves b's state of the day after alone
    older_b = states_of(ORDERS, [("b", DAY_2019, [0, 0, 0])])
    assert store.load(ORDERS, [older_b], replace_until=DAY_2020) == Loaded(
        {DAY_2019: 1}, {DAY_2019: 0}
    )
    assert orders_of(store, "b") == ((2, 2, 2), DAY_2020_NEXT)
    assert sorted(store.keys(ORDERS, since=DAY_2019, until=DAY_2019)) == ["a"]


def test_load_of_nothing(store: OnlineStore) -> None:
    assert store.load(ORDERS, []) == Loaded({}, {})
    assert store.load(ORDERS, [states_of(ORDERS, [])]) == Loaded({}, {})
    assert store.count(ORDERS) == 0


def test_load_reads_back_as_write_latest_does(make_store: StoreFactory) -> None:
    """Every typed case, each key its own batch with the column types Arrow infers (numpy,
    Decimal, integral floats in a COUNT column, nulls only): the same values back."""
    store = make_store()
    batches = []
    for key, (written, _) in TYPED_CASES.items():
        columns = [pa.array([value]) for value in written]
        batches.append(
            pa.RecordBatch.from_arrays(
                [pa.array([key]), pa.array([int(DAY_2020.timestamp())]), *columns],
                names=["cpf", "timestamp", *TYPED.feature_columns],
            )
        )
    loaded = store.load(TYPED, batches)
    assert loaded == Loaded({DAY_2020: len(TYPED_CASES)}, {DAY_2020: len(TYPED_CASES)})
    for key, (_, expected) in TYPED_CASES.items():
        assert_exact(typed_of(store, key), expected)
    nan = states_of(TYPED, [("nan", DAY_2020, [1, None, float("nan")])])
    store.load(TYPED, [nan])
    assert_exact(typed_of(store, "nan"), (1, None, None))


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("n_orders", pa.array([1, None], pa.int64()), "key 'k1': n_orders: a count cannot be null"),
        ("n_orders", pa.array([1.0, 2.5]), "key 'k1': n_orders: 2.5 is not an integer"),
        ("max_amount", pa.array(["1", "2"]), "key 'k0': max_amount: expected a number"),
        ("max_amount", pa.array([True, False]), "key 'k0': max_amount: expected a number"),
        ("avg_amount", pa.array([0.5, float("inf")]), "key 'k1': avg_amount: inf is not finite"),
        ("cpf", pa.array([1, 2]), "the key cpf must be strings"),
        ("cpf", pa.array(["k0", None]), "a null cpf"),
        ("timestamp", pa.array([1, None], pa.int64()), "key 'k1': timestamp: a null timestamp"),
        ("timestamp", pa.array([DAY_2020, DAY_2020]), "must be integer epoch seconds"),
    ],
)
def test_load_refuses_an_invalid_batch_before_writing_it(
    store: OnlineStore, column: str, values: pa.Array, message: str
) -> None:
    good = states_of(TYPED, [("k0", DAY_2020, [1, 2, 0.5]), ("k1", DAY_2020, [1, 2, 0.5])])
    bad = good.set_column(good.schema.get_field_index(column), column, values)
    with pytest.raises(ValueError, match=f"{TYPED.name}.*{message}"):
        store.load(TYPED, [bad])
    assert store.count(TYPED) == 0


def test_load_refuses_states_without_a_feature_column(store: OnlineStore) -> None:
    batch = states_of(ORDERS, [("k", DAY_2020, [1, 1, 1])]).drop_columns(
        [ORDERS.feature_columns[0]]
    )
    with pytest.raises(ValueError, match="lack columns"):
        store.load(ORDERS, [batch])


def _indexes(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        indexes = [row[1] for row in conn.execute("PRAGMA index_list(user_orders)")]
    return [name for name in indexes if not name.startswith("sqlite_autoindex")]


def test_sqlite_load_is_one_transaction(tmp_path: Path) -> None:
    """A bad state in a later batch leaves nothing of the load written, the timestamp index
    (dropped for a load this large against the table) included."""
    with SQLiteOnlineStore(tmp_path / "online.db") as store:
        good = states_of(ORDERS, [("a", DAY_2020, [1, 1, 1])])
        bad = states_of(ORDERS, [("b", DAY_2020, [1, None, 1])])
        with pytest.raises(ValueError, match="a count cannot be null"):
            store.load(ORDERS, [good, bad])
        assert store.count(ORDERS) == 0
        assert store.partition_writer(ORDERS) is None
        # the index is rebuilt by a large load, kept by a small one
        by_timestamp = ["user_orders__by_timestamp"]
        assert _indexes(tmp_path / "online.db") == by_timestamp
        many = [(f"k{i}", DAY_2019, [1, 1, 1]) for i in range(20)]
        assert store.load(ORDERS, [states_of(ORDERS, many)]).total_applied == 20
        assert _indexes(tmp_path / "online.db") == by_timestamp
        assert store.load(ORDERS, [states_of(ORDERS, [("k0", DAY_2020, [2, 2, 2])])]) == Loaded(
            {DAY_2020: 1}, {DAY_2020: 1}
        )
        assert _indexes(tmp_path / "online.db") == by_timestamp
        assert store.keys(ORDERS, since=DAY_2020) == ["k0"]
        assert len(store.keys(ORDERS, until=DAY_2019)) == 19


def test_large_load_spans_statements_calls_and_round_trips(store: OnlineStore) -> None:
    """More states than a round trip of Redis calls (10,000) and a remainder of a call and of
    an SQLite statement (500 rows each), in batches of uneven sizes; every 7th key holds a
    newer state."""
    n = 21_234
    store.write_latest(ORDERS, [(f"{i:011d}", DAY_2020_NEXT, [9, 9, 9]) for i in range(0, n, 7)])
    rows = [
        (f"{i:011d}", DAY_2020 if i % 2 else DAY_2019, [i % 3, i % 7, i % 30]) for i in range(n)
    ]
    batches = [states_of(ORDERS, rows[a:b]) for a, b in ((0, 3), (3, 12_000), (12_000, n))]
    stale_2019 = len(range(0, n, 14))  # even multiples of 7
    stale_2020 = len(range(7, n, 14))
    assert store.load(ORDERS, batches) == Loaded(
        offered={DAY_2019: n // 2, DAY_2020: n // 2},
        applied={DAY_2019: n // 2 - stale_2019, DAY_2020: n // 2 - stale_2020},
    )
    assert store.count(ORDERS) == n
    assert orders_of(store, f"{0:011d}") == ((9, 9, 9), DAY_2020_NEXT)
    assert orders_of(store, f"{12_345:011d}") == ((0, 4, 15), DAY_2020)
    assert orders_of(store, f"{n - 1:011d}") == ((2, 2, 23), DAY_2020)
    assert orders_of(store, f"{n - 2:011d}") == ((1, 1, 22), DAY_2019)


@needs_redis
def test_redis_partition_writer_pickles_and_writes_what_write_latest_writes() -> None:
    """What Spark ships to an executor: it pickles, and once unpickled it opens its own
    connection and stores the same strings as `write_latest`."""
    assert REDIS_URL
    prefix = f"legiti_test_{uuid.uuid4().hex}"
    client = redis.Redis.from_url(REDIS_URL)
    rows: list[tuple[str, datetime, list[Any]]] = [
        ("a", DAY_2020, [2, None, 0.1]),
        ("b", DAY_2020, [0, -3, 3.0]),
        ("c:d", DAY_2019, [1, 7, 1e-300]),
        ("é\r\n", DAY_2020, [1, 2, -0.0]),
    ]
    try:
        with RedisOnlineStore(REDIS_URL, key_prefix=prefix) as store:
            writer = store.partition_writer(TYPED, replace_until=DAY_2020)
            shipped = pickle.loads(pickle.dumps(writer))
            assert shipped == writer
            [counts] = list(shipped(iter([states_of(TYPED, rows)])))
            assert counts.to_pydict() == {
                "timestamp": [int(DAY_2019.timestamp()), int(DAY_2020.timestamp())],
                "offered": [1, 3],
                "applied": [1, 3],
            }
            loaded = {k: client.hgetall(store.state_key(TYPED, k)) for k, _, _ in rows}
        with RedisOnlineStore(REDIS_URL, key_prefix=f"{prefix}_w") as store:
            store.write_latest(TYPED, rows)
            written = {k: client.hgetall(store.state_key(TYPED, k)) for k, _, _ in rows}
            assert sorted(store.keys(TYPED)) == sorted(k for k, _, _ in rows)
        assert loaded == written
        assert loaded["é\r\n"][b"avg_amount"] == b"0.0"
    finally:
        client.close()
        _flush_prefix(REDIS_URL, prefix)
        _flush_prefix(REDIS_URL, f"{prefix}_w")
