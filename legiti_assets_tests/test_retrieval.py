"""Retrieval without a JVM: the pandas path gives what the Spark path gives, row for row."""

import datetime as dt
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from legiti_assets import get_historical_features, storage
from legiti_assets.assets import ASSETS
from legiti_assets.catalog import SPECS
from legiti_assets.engine import TIMESTAMP, feature_set_spec
from legiti_assets.layout import feature_set_table
from legiti_assets.pit_join import covered_until, snapshot
from legiti_assets_tests.extended_registry import DELAYS
from legiti_assets_tests.helpers import SAMPLE, resources_for, write_landing
from legiti_assets_tests.sample import USER_CHARGEBACKS, USER_ORDERS

FEATURE_SETS = ["user_chargebacks", "user_orders"]
SPINE_DDL = "id bigint, cpf string, scored_at timestamp"
FIRST, LAST = dt.date(2018, 5, 12), dt.date(2020, 7, 17)
# the day both feature sets' first write ends on; the second writes the rest
SPLIT = dt.date(2020, 6, 15)
BEFORE_THE_STORE = dt.datetime(2000, 1, 1)


@dataclass(frozen=True)
class Store:
    root: Path
    between_writes: dt.datetime  # an instant after the first feature-set write, before the second


def _materialize(root: Path, selection: list[str], first: dt.date, last: dt.date) -> None:
    result = dg.materialize(
        ASSETS,
        selection=selection,
        resources=resources_for(root),
        instance=dg.DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": str(first),
            "dagster/asset_partition_range_end": str(last),
        },
    )
    assert result.success


@pytest.fixture(scope="module")
def store(tmp_path_factory, spark) -> Store:
    """The sample's feature sets written in two commits each: time travel has two states."""
    root = tmp_path_factory.mktemp("retrieval")
    write_landing(root, SAMPLE.read_bytes())
    _materialize(root, ["order_events", "chargeback_events"], FIRST, LAST)
    _materialize(root, FEATURE_SETS, FIRST, SPLIT)
    between = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    _materialize(root, FEATURE_SETS, SPLIT + dt.timedelta(days=1), LAST)
    specs = [SPECS[n] for n in FEATURE_SETS]
    assert covered_until(root, specs, snapshot(root, specs, between)) == SPLIT
    return Store(root, between)


def _spine(rows: list[tuple[str, str | dt.datetime]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": pd.Series(range(len(rows)), dtype="int64"),
            "cpf": pd.Series([k for k, _ in rows], dtype="object"),
            "scored_at": pd.to_datetime(pd.Series([t for _, t in rows], dtype="object")),
        }
    )


def _by_spark(spark, spine: pd.DataFrame, root: Path, **kw) -> pd.DataFrame:
    """The Spark path's answer, in the spine's order (Spark's join keeps none)."""
    rows = get_historical_features(
        spark.createDataFrame(spine, SPINE_DDL),
        FEATURE_SETS,
        timestamp="scored_at",
        data_dir=root,
        **kw,
    ).toPandas()
    return rows.sort_values("id").reset_index(drop=True)


def _by_pandas(spine: pd.DataFrame, root: Path, **kw) -> pd.DataFrame:
    return get_historical_features(
        spine, FEATURE_SETS, timestamp="scored_at", data_dir=root, **kw
    ).reset_index(drop=True)


def test_the_pandas_path_equals_the_spark_path_on_the_sample(spark, store) -> None:
    spine = _spine(
        [
            ("x", "2020-07-15 02:00:00"),  # order h: a chargeback state, no order state that day
            ("x", "2020-05-13 00:00:00"),  # at midnight: the day's state applies
            ("x", "2020-05-12 23:59:59.999999"),  # the instant before it: the day before's
            ("nobody", "2020-07-15 00:00:00"),
        ]
    ).set_index(pd.Index([30, 10, 20, 0]))
    got = get_historical_features(spine, FEATURE_SETS, timestamp="scored_at", data_dir=store.root)
    assert list(got.index) == [30, 10, 20, 0]  # the spine's order and index
    assert list(got.columns) == [
        "id",
        "cpf",
        "scored_at",
        "user_chargebacks__asof",
        *(a.column for a in SPECS["user_chargebacks"].aggregates),
        "user_orders__asof",
        *(a.column for a in SPECS["user_orders"].aggregates),
    ]
    pd.testing.assert_frame_equal(got.reset_index(drop=True), _by_spark(spark, spine, store.root))
    values = [list(r) for r in got.iloc[:, 3:].itertuples(index=False)]
    t = pd.Timestamp
    assert values[0] == [t("2020-07-15"), 1, 1, 2, t("2020-06-13"), 0, 0, 0]
    assert values[1] == [t("2020-05-13"), 1, 1, 1, t("2020-05-13"), 3, 3, 3]
    assert values[2][4:] == [t("2020-05-12"), 2, 2, 2]


def test_a_zoned_spine_reads_its_instants_in_utc(store) -> None:
    naive = _spine([("x", "2020-05-12 23:30:00"), ("x", "2020-05-13 00:30:00")])
    zoned = naive.assign(scored_at=naive["scored_at"].dt.tz_localize("UTC"))
    zoned["scored_at"] = zoned["scored_at"].dt.tz_convert("America/Sao_Paulo")  # same instants
    got = _by_pandas(zoned, store.root)
    expected = _by_pandas(naive, store.root).assign(scored_at=zoned["scored_at"])
    for name in FEATURE_SETS:
        column = f"{name}__asof"
        expected[column] = expected[column].dt.tz_localize("UTC")
    pd.testing.assert_frame_equal(got, expected)


STATE_DAYS = sorted({r[1].date() for r in USER_ORDERS + USER_CHARGEBACKS})
# days where states change, and their neighbours, are where an off-by-one would show
EDGE_DAYS = sorted({d + dt.timedelta(days=k) for d in STATE_DAYS for k in (-1, 0, 1)})
seconds = st.one_of(st.just(0), st.just(86_399), st.integers(0, 86_399))
keys = st.sampled_from(["x", "y", "z", "nobody", ""])


def spines(last: dt.date) -> st.SearchStrategy[pd.DataFrame]:
    days = st.one_of(
        st.sampled_from([d for d in EDGE_DAYS if FIRST <= d <= last]),
        st.dates(FIRST, last),
    )
    instants = st.builds(
        lambda day, s: dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=s),
        days,
        seconds,
    )
    rows = st.lists(st.tuples(keys, instants), min_size=1, max_size=20)
    return rows.map(_spine)


@settings(max_examples=25, deadline=None)
@given(data=st.data(), moment=st.sampled_from(["now", "between writes", "before the store"]))
def test_random_spines_at_any_instant_equal_the_spark_path(spark, store, data, moment) -> None:
    as_of = {"now": None, "between writes": store.between_writes}.get(moment, BEFORE_THE_STORE)
    last = {"now": LAST, "between writes": SPLIT}.get(moment, LAST)
    spine = data.draw(spines(last))
    pd.testing.assert_frame_equal(
        _by_pandas(spine, store.root, as_of=as_of),
        _by_spark(spark, spine, store.root, as_of=as_of),
    )


@pytest.mark.parametrize(("moment", "covered"), [("now", LAST), ("between writes", SPLIT)])
def test_rows_past_the_covered_history_are_refused_by_both_paths(
    spark, store, moment, covered
) -> None:
    as_of = None if moment == "now" else store.between_writes
    after = dt.datetime.combine(covered, dt.time()) + dt.timedelta(days=1)
    spine = _spine(
        [
            ("x", after - dt.timedelta(microseconds=1)),
            ("x", after),  # midnight after the last covered day: its state is not stored
            ("nobody", after + dt.timedelta(days=40)),
        ]
    )
    messages = []
    for rows in (spine, spark.createDataFrame(spine, SPINE_DDL)):
        with pytest.raises(ValueError, match=rf"^2 spine row\(s\) are dated after {covered},") as e:
            get_historical_features(
                rows, FEATURE_SETS, timestamp="scored_at", data_dir=store.root, as_of=as_of
            )
        messages.append(str(e.value))
    assert messages[0] == messages[1]


def test_without_a_state_counts_read_0_and_other_aggregates_null(
    spark, tmp_path, monkeypatch
) -> None:
    spec = feature_set_spec(DELAYS)  # avg, max, min, sum of doubles and a count
    monkeypatch.setitem(SPECS, spec.name, spec)
    may_10, may_20 = dt.datetime(2020, 5, 10), dt.datetime(2020, 5, 20)
    states = [
        ("x", may_10, *[40.0] * (len(spec.aggregates) - 2), 1, 1),
        # x's chargebacks left the window: a state whose non-count aggregates are null
        ("x", may_20, *[None] * (len(spec.aggregates) - 2), 0, 0),
    ]
    assert [a.count_like for a in spec.aggregates[-2:]] == [True, True]
    storage.write(
        spark.createDataFrame(states, _ddl(spec)),
        tmp_path / feature_set_table(spec.entity, spec.name),
        days={d.date(): storage.DayRecord(version=spec.version, rows=1) for d in (may_10, may_20)},
        based_on=None,
    )
    spine = _spine(
        [
            ("x", "2020-05-09 12:00:00"),  # before x's first state
            ("x", "2020-05-10 00:00:00"),
            ("x", "2020-05-25 00:00:00"),
            ("nobody", "2020-05-25 00:00:00"),
        ]
    )
    got = get_historical_features(spine, [spec.name], timestamp="scored_at", data_dir=tmp_path)
    spark_rows = get_historical_features(
        spark.createDataFrame(spine, SPINE_DDL),
        [spec.name],
        timestamp="scored_at",
        data_dir=tmp_path,
    ).toPandas()
    pd.testing.assert_frame_equal(got, spark_rows.sort_values("id").reset_index(drop=True))
    counts = [a.column for a in spec.aggregates if a.count_like]
    others = [a.column for a in spec.aggregates if not a.count_like]
    no_state = got.iloc[[0, 3]]
    assert no_state[f"{spec.name}__asof"].isna().all()
    assert (no_state[counts] == 0).all().all()
    assert no_state[others].isna().all().all()
    assert got[others].iloc[1].tolist() == [40.0] * len(others)
    assert got[f"{spec.name}__asof"].iloc[2] == pd.Timestamp(may_20)
    assert got[others].iloc[2].isna().all()


def _ddl(spec) -> str:
    return ", ".join(
        [f"`{spec.key}` string", f"`{TIMESTAMP}` timestamp"]
        + [f"`{a.column}` {a.dtype}" for a in spec.aggregates]
    )


def test_the_pandas_path_starts_no_jvm(store) -> None:
    script = f"""
import sys

import legiti_assets

assert "pandas" not in sys.modules and "pyspark" not in sys.modules, "import is not cheap"
import pandas as pd
from pyspark import SparkContext

at = pd.to_datetime(["2020-05-13", "2020-05-12 23:00"])
spine = pd.DataFrame({{"cpf": ["x", "x"], "at": at}})
rows = legiti_assets.get_historical_features(
    spine, ["user_orders"], timestamp="at", data_dir={str(store.root)!r}
)
assert rows["cpf_orders__count_over_30_days_rolling_windows"].tolist() == [3, 2], rows
assert SparkContext._gateway is None and SparkContext._active_spark_context is None
"""
    # another local time zone: nothing of the pandas path may depend on it
    env = {**os.environ, "TZ": "America/Sao_Paulo"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
