"""The main job on the seed's sample: every output equals the contract, worked out by hand."""

import dataclasses
import datetime as dt
import itertools
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pytest

from legiti_assets import run, storage
from legiti_assets_tests.helpers import FEATURE_STORE, dataset_rows, feature_rows, resources_for
from legiti_assets_tests.sample import AWESOME_DATASET, USER_CHARGEBACKS, USER_ORDERS


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, spark) -> tuple[Path, dg.DagsterInstance]:
    """The main job's three runs over the default range, on a copy of the sample."""
    from legiti_assets_tests.helpers import SAMPLE

    data_dir = tmp_path_factory.mktemp("sample")
    (data_dir / "order_events").mkdir()
    (data_dir / "order_events" / "input.csv").write_bytes(SAMPLE.read_bytes())
    instance = dg.DagsterInstance.ephemeral()
    run.materialize(dt.date(2018, 5, 12), dt.date(2020, 7, 17), instance, resources_for(data_dir))
    return data_dir, instance


def test_user_orders_equal_the_contract(built) -> None:
    assert feature_rows(built[0], "user_orders") == USER_ORDERS


def test_user_chargebacks_equal_the_contract(built) -> None:
    assert feature_rows(built[0], "user_chargebacks") == USER_CHARGEBACKS


def test_awesome_dataset_equals_the_contract(built) -> None:
    assert dataset_rows(built[0]) == AWESOME_DATASET


def test_awesome_dataset_columns_in_contract_order(built) -> None:
    import pandas as pd

    columns = list(pd.read_parquet(built[0] / "datasets" / "awesome_dataset").columns)
    assert columns == [
        "order_id",
        "timestamp",
        "chargeback_timestamp",
        "cpf",
        *[f"cpf_orders__count_over_{w}_days_rolling_windows" for w in (3, 7, 30)],
        *[f"cpf_chargebacks__count_over_{w}_days_rolling_windows" for w in (3, 7, 30)],
    ]


def test_a_historical_table_is_delta_with_a_month_in_one_file(built) -> None:
    """One commit wrote every day; each month's rows sit in one file, and the files' spans of
    time do not overlap: a later correction of a day rewrites one file."""
    table = built[0] / FEATURE_STORE / "user_orders"
    assert storage.current_version(table) == 0
    actions = pa.table(storage.log(table).get_add_actions(flatten=True)).to_pylist()
    spans = sorted((a["min.timestamp"], a["max.timestamp"]) for a in actions)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(spans))
    months = [{(t.year, t.month) for t in span} for span in spans]
    assert all(m.isdisjoint(n) for m, n in itertools.pairwise(months))
    # a feature set's days record no row counts (they are counted from the version written)
    assert {r.rows for r in storage.recorded(table).values()} == {None}
    assert storage.stored_days(table) == sorted(storage.recorded(table))
    newest = storage.newest(table, "timestamp")
    assert newest == max(row[1] for row in USER_ORDERS).replace(tzinfo=dt.UTC)
    assert storage.committed_rows(table) == len(USER_ORDERS)


def test_duckdb_reads_the_store_through_deltalake(built) -> None:
    states = storage.log(built[0] / FEATURE_STORE / "user_chargebacks").to_pyarrow_table()
    with duckdb.connect() as con:
        con.register("states", states)
        rows = con.sql(
            "select cpf, sum(cpf_chargebacks__count_over_30_days_rolling_windows), count(*) "
            "from states group by cpf"
        ).fetchall()
    assert rows == [("x", 8, 8)]


def test_every_check_of_every_run_passed(built) -> None:
    instance = built[1]
    records = instance.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    )
    results = {
        (
            r.event_log_entry.dagster_event.event_specific_data.asset_key.to_user_string(),
            r.event_log_entry.dagster_event.event_specific_data.check_name,
        ): r.event_log_entry.dagster_event.event_specific_data.passed
        for r in records
    }
    # raw (4 + 3), feature sets (2 x 6), dataset (3), online (2 x fresh, online_matches_historical)
    assert len(results) == 4 + 3 + 2 * 6 + 3 + 2 * 2
    assert all(results.values()), results


def test_online_store_holds_every_users_latest_state(built) -> None:
    from legiti_assets.catalog import ONLINE_TABLES
    from legiti_assets.online import SQLiteOnlineStore

    with SQLiteOnlineStore(built[0] / "online_store.db") as store:
        got = store.get_features("user", ["x", "y", "z"], list(ONLINE_TABLES.values()))
    counts = {
        cpf: (
            [v for k, v in features.items() if k.startswith("cpf_orders")],
            [v for k, v in features.items() if k.startswith("cpf_chargebacks")],
            features["user_orders__timestamp"],
            features["user_chargebacks__timestamp"],
        )
        for cpf, features in got.items()
    }
    utc = dt.UTC
    assert counts == {
        "x": (
            [2, 2, 2],
            [1, 1, 2],
            dt.datetime(2020, 7, 17, tzinfo=utc),
            dt.datetime(2020, 7, 15, tzinfo=utc),
        ),
        "y": ([0, 0, 0], [0, 0, 0], dt.datetime(2020, 5, 13, tzinfo=utc), None),
        "z": ([0, 0, 0], [0, 0, 0], dt.datetime(2020, 6, 11, tzinfo=utc), None),
    }


def test_feature_server_returns_the_online_state(built) -> None:
    from starlette.testclient import TestClient

    from legiti_assets.online import SQLiteOnlineStore
    from legiti_assets.online.server import SERVED_TABLES, create_app

    app = create_app(lambda: SQLiteOnlineStore(built[0] / "online_store.db"), SERVED_TABLES)
    with TestClient(app) as client:
        body = client.get("/features/user/x").json()
    assert body["features"]["cpf_chargebacks__count_over_30_days_rolling_windows"] == 2
    assert body["features"]["cpf_orders__count_over_3_days_rolling_windows"] == 2
    assert body["timestamps"]["user_chargebacks"].startswith("2020-07-15")


def test_any_spine_gets_point_in_time_features(built, spark) -> None:
    """The README's recipe: another training set in a few lines, from the stored states."""
    from legiti_assets.pit_join import get_historical_features

    spine = spark.createDataFrame(
        [
            ("x", dt.datetime(2020, 5, 13, 0, 0, 0), "at midnight: the day's state applies"),
            ("x", dt.datetime(2020, 7, 15, 2, 0, 0), "order h's instant"),
            ("nobody", dt.datetime(2020, 7, 15), "no state"),
        ],
        "cpf string, scored_at timestamp, note string",
    )
    rows = get_historical_features(
        spine, ["user_chargebacks", "user_orders"], timestamp="scored_at", data_dir=built[0]
    ).collect()
    assert sorted(tuple(r) for r in rows) == [
        ("nobody", dt.datetime(2020, 7, 15), "no state", None, 0, 0, 0, None, 0, 0, 0),
        (
            "x",
            dt.datetime(2020, 5, 13),
            "at midnight: the day's state applies",
            dt.datetime(2020, 5, 13),
            1,
            1,
            1,
            dt.datetime(2020, 5, 13),
            3,
            3,
            3,
        ),
        (
            "x",
            dt.datetime(2020, 7, 15, 2),
            "order h's instant",
            dt.datetime(2020, 7, 15),
            1,
            1,
            2,
            dt.datetime(2020, 6, 13),
            0,
            0,
            0,
        ),
    ]
    with pytest.raises(ValueError, match=r"unknown feature sets \['user_refunds'\]"):
        get_historical_features(spine, ["user_refunds"], timestamp="scored_at", data_dir=built[0])


def test_days_stored_under_another_declaration_are_refused_with_backfill_advice(
    built, spark, tmp_path
) -> None:
    import shutil

    from legiti_assets.catalog import SPECS
    from legiti_assets.pit_join import read_states
    from legiti_assets.schemas import StoredSchemaError

    copy = tmp_path / "data"
    shutil.copytree(built[0] / "feature_store", copy / "feature_store")
    table = copy / FEATURE_STORE / "user_orders"
    assert read_states(spark, copy, SPECS["user_orders"]).count() == len(USER_ORDERS)
    # a version of the table written under a declaration with one column less
    older = storage.read(spark, table).drop("cpf_orders__count_over_30_days_rolling_windows")
    version = storage.current_version(table)
    days = storage.recorded(table)
    storage.write(older, table, days=days, based_on=version, new_schema=True)
    with pytest.raises(
        StoredSchemaError,
        match=r"user_orders: the rows stored in .*user_orders have columns.* backfill",
    ):
        read_states(spark, copy, SPECS["user_orders"])


def test_days_computed_under_another_declaration_version_are_refused(
    built, spark, tmp_path
) -> None:
    import shutil

    from legiti_assets.catalog import SPECS
    from legiti_assets.pit_join import read_states
    from legiti_assets.schemas import StoredSchemaError

    copy = tmp_path / "data"
    shutil.copytree(built[0] / "feature_store", copy / "feature_store")
    table = copy / FEATURE_STORE / "user_orders"
    days = storage.recorded(table)
    assert {day.version for day in days.values()} == {SPECS["user_orders"].version}
    day = dt.date(2020, 5, 13)
    days[day] = dataclasses.replace(days[day], version="0123456789abcdef")
    # the same rows committed again, recorded as computed under another declaration
    version = storage.current_version(table)
    storage.write(storage.read(spark, table), table, days=days, based_on=version)
    with pytest.raises(
        StoredSchemaError,
        match=r"user_orders: 1 stored day\(s\), 2020-05-13 to 2020-05-13, were computed under "
        r"another declaration .* backfill",
    ):
        read_states(spark, copy, SPECS["user_orders"])


def test_a_spine_past_the_stored_history_is_refused(built, spark) -> None:
    from legiti_assets.pit_join import get_historical_features

    spine = spark.createDataFrame([("x", dt.datetime(2020, 9, 1))], "cpf string, at timestamp")
    with pytest.raises(ValueError, match=r"1 spine row\(s\) are dated after 2020-07-17"):
        get_historical_features(spine, ["user_orders"], timestamp="at", data_dir=built[0])
