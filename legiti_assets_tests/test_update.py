"""`make update` converges: after any sequence of drops, corrections, updates and partial
re-runs, every output equals a from-scratch `make awesome-dataset` on the final landing, and
the online store mirrors the history."""

import datetime as dt
import os
import shutil
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from legiti_assets import get_historical_features, run, storage
from legiti_assets.assets.online import mismatches
from legiti_assets.assets.raw import DATED_BY
from legiti_assets.catalog import ONLINE_TABLES, SPECS
from legiti_assets.engine import TIMESTAMP
from legiti_assets.landing import LandingFileError
from legiti_assets.online import open_online_store
from legiti_assets.records import day_range
from legiti_assets.resources import DataDir, OnlineStoreResource
from legiti_assets.update import UPDATE_TAG, update
from legiti_assets_tests.helpers import (
    SAMPLE,
    dataset_rows,
    feature_assets,
    feature_rows,
    raw_assets,
    read_frame,
    read_table,
    resources_for,
    run_assets,
)
from legiti_assets_tests.sample import AWESOME_DATASET
from legiti_assets_tests.test_online_store import REDIS_URL, needs_redis

HEADER = "order_id,order_timestamp,cpf,chargeback_timestamp\n"
START, END = dt.date(2018, 5, 12), dt.date(2020, 7, 17)


def _stores(data_dir: Path, resources: dict[str, object] | None = None) -> dict[str, object]:
    """Everything a user reads: raw tables, feature sets, the dataset, the online store."""
    found: dict[str, object] = {
        name: read_table(data_dir / "raw" / name) for name in ("order_events", "chargeback_events")
    }
    for name in SPECS:
        found[name] = feature_rows(data_dir, name)
    found["awesome_dataset"] = dataset_rows(data_dir)
    online = (resources or resources_for(data_dir))["online_store"]
    assert isinstance(online, OnlineStoreResource)
    with online.open() as store:
        for table in ONLINE_TABLES.values():
            keys = sorted(store.keys(table))
            found[f"{table.name}_online"] = store.get_features(table.entity, keys, [table])
    return found


def _from_scratch(data_dir: Path, tmp: Path, instance: dg.DagsterInstance) -> dict[str, object]:
    """`make awesome-dataset` on a copy of the landing, over the feature days `data_dir` has."""
    days = [
        d
        for spec in SPECS.values()
        for d in storage.recorded_days(data_dir / "feature_store/historical/user" / spec.name)
    ]
    fresh = tmp / "from_scratch"
    shutil.rmtree(fresh, ignore_errors=True)
    shutil.copytree(data_dir / "order_events", fresh / "order_events")
    run.materialize(min(days), max(days), instance, resources_for(fresh))
    return _stores(fresh)


def _data_files(data_dir: Path) -> dict[tuple[str, str], tuple[dt.date, dt.date]]:
    """Each data file of each daily table's latest version, with its first and last day."""
    tables = {f"raw/{n}": by for n, by in DATED_BY.items()}
    tables |= {f"feature_store/historical/user/{n}": TIMESTAMP for n in SPECS}
    found = {}
    for table, dated_by in tables.items():
        actions = pa.table(DeltaTable(str(data_dir / table)).get_add_actions(flatten=True))
        for action in actions.to_pylist():
            span = (action[f"min.{dated_by}"].date(), action[f"max.{dated_by}"].date())
            found[(table, action["path"])] = span
    return found


def _online_matches(data_dir: Path, spark, resources: dict[str, object] | None = None) -> None:
    online = (resources or resources_for(data_dir))["online_store"]
    assert isinstance(online, OnlineStoreResource)
    with online.open() as store:
        for spec in SPECS.values():
            _, _, found = mismatches(spark, store, DataDir(path=str(data_dir)), spec)
            assert found == [], spec.name


def _as_of(data_dir: Path, instant: dt.datetime) -> list[tuple]:
    """`awesome_dataset`'s rows rebuilt from the store as it was at `instant`: the raw orders
    then as the spine, the feature sets then, through pandas (no JVM)."""
    version = storage.version_at(data_dir / "raw" / "order_events", instant)
    spine = storage.log(data_dir / "raw" / "order_events", version).to_pandas()
    features = get_historical_features(
        spine, list(SPECS), timestamp="order_timestamp", data_dir=data_dir, as_of=instant
    )
    names = [c for c in features.columns if c not in spine.columns and not c.endswith("__asof")]
    ordered = features[["order_id", "order_timestamp", "chargeback_timestamp", "cpf", *names]]
    return read_frame(ordered)


@pytest.fixture
def sample_dir(built_sample, tmp_path) -> Path:
    """A copy of the built sample of its own."""
    return Path(shutil.copytree(built_sample, tmp_path / "data"))


def test_a_corrected_sample_converges(sample_dir, spark, tmp_path) -> None:
    """b moved to another day, z's only order (d) withdrawn, h's chargeback reported in a drop."""
    instance = dg.DagsterInstance.ephemeral()
    resources = resources_for(sample_dir)
    # the README's example: the store brought through a later day first, then corrected on it
    through = dt.date(2020, 8, 20)
    assert update(instance, resources, today=through).ingested["order_events"] == day_range(
        dt.date(2020, 7, 18), through
    )
    landing = sample_dir / "order_events"
    sample = SAMPLE.read_text().splitlines(keepends=True)
    (landing / "input.csv").write_text("".join(line for line in sample if line[:2] != "d,"))
    (landing / "later-2020-07-18.csv").write_text(
        HEADER + "b,2020-04-20 10:00:00,y,\nh,2020-07-15 02:00:00,x,2020-07-16 08:00:00\n"
    )
    before = _data_files(sample_dir)
    built_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # naive: UTC
    report = update(instance, resources, today=through)
    assert report.lines()[0].endswith("landing of 2 file(s), 8 orders, through 2020-08-20")
    assert report.lines()[1:] == [
        # b's old and new day, d's day, h's order day (its record holds the chargeback)
        "order_events: ingested 4 days: 2020-04-12, 2020-04-20, 2020-05-11, 2020-07-15",
        "chargeback_events: ingested 1 day: 2020-07-16",
        # each changed day's windows
        "user_orders: recomputed 91 days: 2020-04-13..2020-06-11, 2020-07-16..2020-08-15",
        "user_orders_online: 1 states written, 1 keys reconciled (0 back to an earlier state, "
        "1 removed)",
        "user_chargebacks: recomputed 31 days: 2020-07-17..2020-08-16",
        "user_chargebacks_online: 1 states written, 0 keys reconciled (0 back to an earlier "
        "state, 0 removed)",
        "awesome_dataset: rebuilt, 8 rows",
        f"9 run(s) tagged {UPDATE_TAG}={report.update_id}",
    ]
    assert report.tags()["legiti/ingested/order_events"].startswith("4 days: 2020-04-12, ")
    assert report.tags()["legiti/keys_reconciled/user_orders"] == "1"
    assert all(
        instance.get_run_by_id(r).tags[UPDATE_TAG] == report.update_id  # type: ignore[union-attr]
        for r in report.run_ids
    )
    # a data file is rewritten only if it holds a rewritten day
    after = _data_files(sample_dir)
    rewritten = {
        **{f"raw/{n}": days for n, days in report.ingested.items()},
        **{f"feature_store/historical/user/{n}": days for n, days in report.recomputed.items()},
    }
    for (table, path), (first, last) in before.items():
        if (table, path) not in after:
            assert any(first <= day <= last for day in rewritten[table]), (table, path)
    assert sum(key in after for key in before) > 5
    updated = _stores(sample_dir)
    # z has no order left: no state, online or historical
    assert "z" not in updated["user_orders_online"]  # type: ignore[operator]
    assert updated["user_orders_online"]["y"]["user_orders__timestamp"] == dt.datetime(  # type: ignore[index]
        2020, 5, 21, tzinfo=dt.UTC
    )
    assert updated == _from_scratch(sample_dir, tmp_path, instance)
    _online_matches(sample_dir, spark)
    # nothing changed since: nothing is rewritten
    again = update(instance, resources, today=through)
    assert not again.changed
    assert again.lines()[-1] == "everything is up to date: nothing was rewritten"
    # yesterday's training set, rebuilt after today's corrections: as the store knew it before
    assert _as_of(sample_dir, built_at) == AWESOME_DATASET


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("redis", marks=needs_redis)])
def test_a_key_goes_back_to_its_earlier_state(backend, sample_dir, spark) -> None:
    """Withdrawing x's last orders (h, i) puts x's online state back to its earlier latest row."""
    instance = dg.DagsterInstance.ephemeral()
    resources = resources_for(sample_dir, REDIS_URL if backend == "redis" else None)
    if backend == "redis":
        # the copied store's online tables are SQLite: fill this Redis from the history
        online = [n for n in feature_assets() if n.endswith("_online")]
        run_assets(online, instance, resources, START, END)
    landing = sample_dir / "order_events" / "input.csv"
    sample = SAMPLE.read_text().splitlines(keepends=True)
    landing.write_text("".join(line for line in sample if line[:2] not in ("h,", "i,")))
    report = update(instance, resources)
    assert report.online["user_orders"]["keys_restored"] == 1
    assert report.recomputed["user_orders"] == [
        dt.date(2020, 7, 16) + dt.timedelta(days=i) for i in range(2)
    ]
    updated = _stores(sample_dir, resources)
    _online_matches(sample_dir, spark, resources)
    # x's orders of 2020-05-10..13 left its windows by 2020-06-13: the state of all zeros
    assert updated["user_orders_online"]["x"] == {  # type: ignore[index]
        "cpf_orders__count_over_3_days_rolling_windows": 0,
        "cpf_orders__count_over_7_days_rolling_windows": 0,
        "cpf_orders__count_over_30_days_rolling_windows": 0,
        "user_orders__timestamp": dt.datetime(2020, 6, 13, tzinfo=dt.UTC),
    }


def test_the_check_reports_an_online_store_out_of_step(sample_dir, spark) -> None:
    table = ONLINE_TABLES["user_orders"]
    with open_online_store(str(sample_dir / "online_store.db")) as store:
        store.write_latest(table, [("ghost", dt.datetime(2020, 1, 1), [1, 1, 1])])
        store.write_latest(
            table, [("x", dt.datetime(2020, 7, 17), [9, 9, 9])], replace_until=dt.datetime.max
        )
        compared, every, found = mismatches(
            spark, store, DataDir(path=str(sample_dir)), SPECS["user_orders"]
        )
    assert (compared, every) == (4, 1)
    assert found == [
        "ghost: online state of 2020-01-01 00:00:00+00:00 but no stored row",
        "x: online 2020-07-17 00:00:00+00:00 {'cpf_orders__count_over_3_days_rolling_windows': 9, "
        "'cpf_orders__count_over_7_days_rolling_windows': 9, "
        "'cpf_orders__count_over_30_days_rolling_windows': 9}, latest stored row "
        "2020-07-17 00:00:00+00:00 {'cpf_orders__count_over_3_days_rolling_windows': 2, "
        "'cpf_orders__count_over_7_days_rolling_windows': 2, "
        "'cpf_orders__count_over_30_days_rolling_windows': 2}",
    ]


# --- the convergence property -------------------------------------------------------------

BASE = dt.datetime(2020, 3, 1)
USERS = ("u0", "u1", "u2")


@st.composite
def records(
    draw, ids: st.SearchStrategy[str], days: st.SearchStrategy[int] | None = None
) -> tuple[str, str, str, str]:
    """One landing record: an order at 00:00:01, 12:00 or 23:59:59 of one of 14 days (two
    before the first built), maybe charged back 0-6 days later."""
    placed = BASE + dt.timedelta(
        days=draw(st.integers(-2, 11) if days is None else days),
        seconds=draw(st.sampled_from([1, 43_200, 86_399])),
    )
    charged = draw(st.none() | st.tuples(st.integers(0, 6), st.sampled_from([0, 3_600])))
    chargeback = (
        "" if charged is None else str(placed + dt.timedelta(days=charged[0], seconds=charged[1]))
    )
    return (draw(ids), str(placed), draw(st.sampled_from(USERS)), chargeback)


def _file(rows: list[tuple[str, str, str, str]]) -> str:
    unique = {row[0]: row for row in rows}  # one record per order within a file
    return HEADER + "".join(",".join(row) + "\n" for row in unique.values())


step = st.tuples(
    # a drop of new and restated orders, withdrawals from every file, or a drop of new orders
    # that only adds a day after every other
    st.sampled_from(["drop", "withdraw", "new_day"]),
    st.lists(st.integers(0, 9), min_size=1, max_size=4),
    # then: an update, a partial re-run of the raw events, of the feature sets (with or without
    # their online assets), or nothing
    st.sampled_from(["update", "raw", "features", "features_only", "nothing"]),
    st.integers(-3, 14),
    st.integers(0, 6),
)


@settings(
    # each example is some 20 Dagster runs: CI runs a few, `LEGITI_PROPERTY_EXAMPLES=200` more
    max_examples=int(os.environ.get("LEGITI_PROPERTY_EXAMPLES", "8")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    initial=st.lists(records(st.sampled_from([f"o{i}" for i in range(10)])), max_size=6),
    steps=st.lists(step, min_size=1, max_size=3),
    data=st.data(),
)
def test_any_sequence_of_changes_converges(spark, tmp_path_factory, initial, steps, data) -> None:
    tmp = tmp_path_factory.mktemp("converge")
    data_dir = tmp / "data"
    landing = data_dir / "order_events"
    landing.mkdir(parents=True)
    files = {"00.csv": list({r[0]: r for r in initial}.values())}
    (landing / "00.csv").write_text(_file(files["00.csv"]))
    instance = dg.DagsterInstance.ephemeral()
    resources = resources_for(data_dir)
    run.materialize(BASE.date(), BASE.date() + dt.timedelta(days=12), instance, resources)
    for number, (kind, ids, then, offset, length) in enumerate(steps, start=1):
        if kind == "drop":
            drawn = [data.draw(records(st.just(f"o{i}"))) for i in ids]
            files[f"{number:02d}.csv"] = list({r[0]: r for r in drawn}.values())
        elif kind == "new_day":
            day = st.just(12 + number)
            drawn = [data.draw(records(st.just(f"n{number}-{i}"), day)) for i in ids]
            files[f"{number:02d}.csv"] = list({r[0]: r for r in drawn}.values())
        else:
            gone = {f"o{i}" for i in ids}
            files = {n: [r for r in rows if r[0] not in gone] for n, rows in files.items()}
        for name, rows in files.items():
            (landing / name).write_text(_file(rows))
        first = BASE.date() + dt.timedelta(days=offset)
        last = first + dt.timedelta(days=length)
        if then == "update":
            update(instance, resources)
        elif then == "raw":
            run_assets(raw_assets(), instance, resources, first, last)
        elif then == "features":
            run_assets(feature_assets(), instance, resources, first, last)
        elif then == "features_only":
            run_assets(list(SPECS), instance, resources, first, last)
    update(instance, resources)
    assert _stores(data_dir) == _from_scratch(data_dir, tmp, instance)
    _online_matches(data_dir, spark)


def test_a_failed_landing_read_changes_nothing(sample_dir) -> None:
    table = sample_dir / "raw" / "order_events"
    before = storage.current_version(table)
    (sample_dir / "order_events" / "later.csv").write_text(HEADER + "a,2020-13-01 00:00:00,x,\n")
    with pytest.raises(
        LandingFileError, match=r"later.csv: 1 problem.*\n  line 2, field order_timestamp"
    ):
        update(dg.DagsterInstance.ephemeral(), resources_for(sample_dir))
    assert storage.current_version(table) == before


def test_large_stores_are_compared_on_a_fixed_sample(sample_dir, spark, monkeypatch) -> None:
    """Beyond SAMPLE_KEYS keys the check compares 1 key in n, chosen by CRC32 of the key alike
    in Spark (the stored rows) and in Python (the online keys)."""
    import zlib

    from legiti_assets.assets import online

    table = ONLINE_TABLES["user_orders"]
    keys = [f"k{i}" for i in range(40)]
    with open_online_store(str(sample_dir / "online_store.db")) as store:
        # 43 keys online, 15 per sample: 1 key in 3, x among them and y not
        store.write_latest(table, [(k, dt.datetime(2020, 1, 1), [1, 1, 1]) for k in keys])
        for key in ("x", "y"):
            store.write_latest(table, [(key, dt.datetime(2020, 7, 17), [9, 9, 9])])
        monkeypatch.setattr(online, "SAMPLE_KEYS", 15)
        compared, every, found = mismatches(
            spark, store, DataDir(path=str(sample_dir)), SPECS["user_orders"]
        )
    sampled = sorted(k for k in [*keys, "x", "y", "z"] if zlib.crc32(k.encode()) % 3 == 0)
    assert every == 3 and "x" in sampled and "y" not in sampled
    assert compared == len(sampled)
    reported = {line.split(":")[0]: line for line in found}
    assert sorted(reported) == sampled
    # x's stored rows were sampled in Spark too: its online state is compared with them
    assert reported["x"].startswith("x: online 2020-07-17 00:00:00+00:00 {")
    assert "latest stored row 2020-07-17" in reported["x"]


def test_a_small_store_is_sampled_by_its_history_keys(
    sample_dir, spark, tmp_path, monkeypatch
) -> None:
    """An online store with fewer keys than SAMPLE_KEYS, over a history with more: the sample
    is sized by the history's keys, and every stored key sampled is reported missing."""
    import zlib

    from legiti_assets.assets import online

    update(dg.DagsterInstance.ephemeral(), resources_for(sample_dir))
    data = DataDir(path=str(sample_dir))
    spec = SPECS["user_orders"]
    stored = {r[0] for r in online.stored_states(spark, data, spec).select("cpf").collect()}
    assert len(stored) >= 2
    monkeypatch.setattr(online, "SAMPLE_KEYS", 1)
    with open_online_store(str(tmp_path / "empty.db")) as store:
        compared, every, found = mismatches(spark, store, data, spec)
    assert every == len(stored)
    sampled = sorted(k for k in stored if zlib.crc32(k.encode()) % every == 0)
    assert sampled  # the sample's keys x, y, z: x
    assert compared == len(sampled)
    assert [line.split(":")[0] for line in found] == sampled
    assert all(": no online state, latest stored row" in line for line in found)


def test_update_completes_what_partial_runs_left(sample_dir, spark, tmp_path) -> None:
    """A new day ingested and computed by hand, without the online assets or the dataset: the
    update mirrors those days and rebuilds the dataset, and mirrors everything into a new
    store."""
    instance = dg.DagsterInstance.ephemeral()
    resources = resources_for(sample_dir)
    (sample_dir / "order_events" / "later-2020-07-17.csv").write_text(
        HEADER + "j,2020-07-17 09:00:00,y,\n"
    )
    for selection, day in (
        (raw_assets(), dt.date(2020, 7, 17)),
        (list(SPECS), dt.date(2020, 7, 18)),
    ):
        run_assets(selection, instance, resources, day, day)
    report = update(instance, resources)
    assert report.lines()[1:-1] == [
        "order_events: ingested none",
        "chargeback_events: ingested none",
        "user_orders: recomputed none",
        "user_orders_online: mirrored again 1 day: 2020-07-18",
        # y's new order: x's state does not change that day
        "user_orders_online: 1 states written, 0 keys reconciled (0 back to an earlier state, "
        "0 removed)",
        "user_chargebacks: recomputed none",
        "user_chargebacks_online: mirrored again 1 day: 2020-07-18",
        "user_chargebacks_online: 1 states written, 0 keys reconciled (0 back to an earlier "
        "state, 0 removed)",
        "awesome_dataset: rebuilt, 10 rows",
    ]
    _online_matches(sample_dir, spark)
    # another, empty store: every day is mirrored into it
    other = resources_for(sample_dir)
    other["online_store"] = OnlineStoreResource(
        data=DataDir(path=str(sample_dir)), url=f"sqlite:///{tmp_path / 'other.db'}"
    )
    report = update(instance, other)
    assert report.mirrored["user_orders"][0] == START
    assert len(report.mirrored["user_orders"]) == (dt.date(2020, 7, 18) - START).days + 1
    assert report.training_sets == {}
    assert update(instance, other).changed is False
