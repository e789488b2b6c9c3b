"""What the sample's range runs record of each day, and of the run: each day's materialization
has that day's rows, keys and first rows; the run's totals are named as such."""

import contextlib
import datetime as dt
import io
import math
import shutil
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest
from pyspark.sql.types import (
    DateType,
    DoubleType,
    LongType,
    StructField,
    StructType,
    TimestampType,
)

from legiti_assets import io_managers, run
from legiti_assets.assets.feature_store import LOOKBACK_CHECK
from legiti_assets.assets.online import midnight, mirror_days
from legiti_assets.catalog import ONLINE_TABLES, SPECS, online_name
from legiti_assets.online import SQLiteOnlineStore
from legiti_assets.resources import DataDir
from legiti_assets.schemas import spark_ddl, state_schema
from legiti_assets.update import update
from legiti_assets_tests.helpers import SAMPLE, SAMPLE_END, SAMPLE_START, resources_for, run_assets
from legiti_assets_tests.sample import AWESOME_DATASET, USER_CHARGEBACKS, USER_ORDERS

ORDER_DAYS = ["2018-05-12", "2020-04-12", "2020-05-10", *["2020-05-11"] * 2, "2020-05-12"]
ORDER_DAYS += ["2020-05-13", "2020-07-15", "2020-07-16"]  # a .. i
SAMPLE_DAYS = (SAMPLE_END - SAMPLE_START).days + 1
ORDERS_COLUMNS = [f"cpf_orders__count_over_{w}_days_rolling_windows" for w in (3, 7, 30)]
CHARGEBACKS_COLUMNS = [f"cpf_chargebacks__count_over_{w}_days_rolling_windows" for w in (3, 7, 30)]


def iso(value: object) -> object:
    """A contract value as a preview holds it: a (UTC) time as the landing writes it."""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return value


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory) -> tuple[Path, dg.DagsterInstance, list[str]]:
    """`make awesome-dataset` over the sample: its data directory, instance and printed lines."""
    data_dir = tmp_path_factory.mktemp("metadata")
    (data_dir / "order_events").mkdir()
    shutil.copy(SAMPLE, data_dir / "order_events" / "input.csv")
    instance = dg.DagsterInstance.ephemeral()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        run.materialize(SAMPLE_START, SAMPLE_END, instance, resources_for(data_dir))
    return data_dir, instance, printed.getvalue().splitlines()


def by_day(instance: dg.DagsterInstance, asset: str) -> dict[str, dict[str, object]]:
    """Each partition's latest materialization metadata (its values)."""
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=10_000).records
    found: dict[str, dict[str, object]] = {}
    for record in sorted(records, key=lambda r: r.storage_id):
        materialization = record.asset_materialization
        assert materialization is not None and materialization.partition is not None
        found[materialization.partition] = {k: v.value for k, v in materialization.metadata.items()}
    return found


def preview_rows(table: object) -> tuple[list[tuple[str, str]], list[tuple[object, ...]]]:
    """A preview's (column, type) pairs and its records as tuples in column order."""
    assert isinstance(table, dg.TableMetadataValue)
    columns = [(c.name, c.type) for c in table.schema.columns]
    return columns, [tuple(r.data[name] for name, _ in columns) for r in table.records]


def test_each_day_of_a_range_run_has_its_own_rows_keys_and_preview(built) -> None:
    days = by_day(built[1], "user_orders")
    assert len(days) == SAMPLE_DAYS
    assert {d: m["dagster/row_count"] for d, m in days.items() if m["dagster/row_count"]} == (
        Counter(str(row[1].date()) for row in USER_ORDERS)
    )
    assert all(m["keys"] == m["dagster/row_count"] for m in days.values())
    assert {k: v for k, v in days["2020-04-12"].items() if k != "path"} == {
        "dagster/row_count": 0,
        "keys": 0,
        "run_rows": 29,
        "run_days": 798,
        "run_days_with_rows": 24,
        "run_first_day": "2018-05-12",
        "run_last_day": "2020-07-17",
        "table_version": 0,
    }
    columns, rows = preview_rows(days["2020-05-13"]["preview"])
    assert columns == [("cpf", "string"), ("timestamp", "timestamp")] + [
        (c, "int") for c in ORDERS_COLUMNS
    ]
    assert rows == [
        ("x", "2020-05-13 00:00:00", 3, 3, 3),
        ("y", "2020-05-13 00:00:00", 0, 0, 0),
    ]
    # every day's preview is its contract rows, by key (no day has more than ten)
    for name, contract in (("user_orders", USER_ORDERS), ("user_chargebacks", USER_CHARGEBACKS)):
        previews = {
            d: preview_rows(m["preview"])[1]
            for d, m in by_day(built[1], name).items()
            if "preview" in m
        }
        expected: dict[str, list[tuple[object, ...]]] = {}
        for row in sorted(contract):
            expected.setdefault(str(row[1].date()), []).append(tuple(map(iso, row)))
        assert previews == expected, name


def test_each_raw_day_has_its_rows(built) -> None:
    days = by_day(built[1], "order_events")
    assert len(days) == SAMPLE_DAYS
    rows = {d: m["dagster/row_count"] for d, m in days.items()}
    assert {d: n for d, n in rows.items() if n} == Counter(ORDER_DAYS)
    assert {m["run_rows"] for m in days.values()} == {9}
    assert {m["landing_orders"] for m in days.values()} == {9}
    assert "preview" not in days["2020-05-11"]


def test_each_online_day_has_the_states_it_applied_and_the_run_totals(built) -> None:
    days = by_day(built[1], online_name("user_orders"))
    applied = {d: m["day_states_applied"] for d, m in days.items()}
    # each key's latest state: y's of 2020-05-13, z's of 2020-06-11, x's of 2020-07-17
    assert {d: n for d, n in applied.items() if n} == {
        "2020-05-13": 1,
        "2020-06-11": 1,
        "2020-07-17": 1,
    }
    assert len(applied) == SAMPLE_DAYS
    totals = {
        k: v for k, v in days["2020-05-13"].items() if k not in ("store", "day_states_applied")
    }
    assert totals == {
        "states_offered": 3,
        "states_applied": 3,
        "keys_restored": 0,
        "keys_removed": 0,
        "keys_reconciled": 0,
        "store_keys": 3,
        "store_latest_timestamp": "2020-07-17 00:00:00+00:00",
    }
    chargebacks = by_day(built[1], online_name("user_chargebacks"))
    assert {
        d: m["day_states_applied"] for d, m in chargebacks.items() if m["day_states_applied"]
    } == {"2020-07-15": 1}


def test_the_training_set_previews_its_first_rows(built) -> None:
    event = built[1].get_latest_materialization_event(dg.AssetKey("awesome_dataset"))
    assert event is not None and event.asset_materialization is not None
    metadata = event.asset_materialization.metadata
    columns, rows = preview_rows(metadata["preview"])
    assert columns == [
        ("order_id", "string"),
        ("timestamp", "timestamp"),
        ("chargeback_timestamp", "timestamp"),
        ("cpf", "string"),
        *((c, "int") for c in ORDERS_COLUMNS + CHARGEBACKS_COLUMNS),
    ]
    assert rows[0] == ("a", "2018-05-12 00:00:01", None, "x", 0, 0, 0, 0, 0, 0)
    # nine rows, by time: the whole contract
    assert rows == [tuple(map(iso, row)) for row in AWESOME_DATASET]
    assert metadata["dagster/row_count"].value == 9


def test_the_printed_summary_has_each_runs_totals(built) -> None:
    assert sorted(built[2]) == [
        "awesome_dataset: 9 rows",
        "chargeback_events: 3 rows",
        "order_events: 9 rows",
        "user_chargebacks: 8 rows",
        "user_chargebacks_online: 0 keys reconciled",
        "user_chargebacks_online: 1 states written",
        "user_orders: 29 rows",
        "user_orders_online: 0 keys reconciled",
        "user_orders_online: 3 states written",
    ]


def test_a_day_the_store_holds_newer_states_of_counts_what_it_applied(spark, tmp_path) -> None:
    """A run of older days after newer ones: the store keeps x's newer state."""
    spec = SPECS["user_orders"]
    may_1, may_2 = dt.date(2020, 5, 1), dt.date(2020, 5, 2)
    states = spark.createDataFrame(
        [("x", dt.datetime(2020, 5, 1), 1, 1, 1), ("y", dt.datetime(2020, 5, 2), 2, 2, 2)],
        spark_ddl(state_schema(spec)),
    )
    with SQLiteOnlineStore(tmp_path / "online.db") as store:
        store.write_latest(
            ONLINE_TABLES[spec.name], [("x", midnight(dt.date(2020, 6, 1)), [0] * 3)]
        )
        done = mirror_days(spark, store, DataDir(path=str(tmp_path)), spec, states, [may_1, may_2])
    assert done.totals == {
        "states_offered": 2,
        "states_applied": 1,
        "keys_restored": 0,
        "keys_removed": 0,
    }
    assert done.applied_per_day == {may_1: 0, may_2: 1}


def test_a_run_previews_its_newest_days_up_to_a_number_of_rows(spark, monkeypatch) -> None:
    may = [dt.datetime(2020, 5, d) for d in (1, 2, 3)]
    rows = [("b", may[0]), ("a", may[0]), ("c", may[1])]
    rows += [(f"k{i:02}", may[2]) for i in reversed(range(12))]
    df = spark.createDataFrame(rows, "cpf string, timestamp timestamp")
    per_day = {day.date(): n for day, n in Counter(ts for _, ts in rows).items()}

    def previewed(budget: int) -> dict[str, list[str]]:
        monkeypatch.setattr(io_managers, "PREVIEW_SORTED_ROWS", budget)
        found = io_managers.day_previews(df, "timestamp", ["cpf"], per_day)
        return {str(d): [r[0] for r in preview_rows(t)[1]] for d, t in found.items()}

    first_ten = [f"k{i:02}" for i in range(10)]
    assert previewed(13) == {"2020-05-02": ["c"], "2020-05-03": first_ten}
    assert previewed(15) == {"2020-05-01": ["a", "b"], "2020-05-02": ["c"], "2020-05-03": first_ten}
    # the newest day's, whatever its rows
    assert previewed(1) == {"2020-05-03": first_ten}


def test_a_preview_holds_json_values() -> None:
    schema = StructType(
        [
            StructField("at", TimestampType()),
            StructField("day", DateType()),
            StructField("x", DoubleType()),
            StructField("n", LongType()),
        ]
    )
    at = dt.datetime(2020, 5, 1, 10, tzinfo=dt.UTC)
    table = io_managers.preview_table(
        schema, [(at, at.date(), math.nan, None), (None, None, math.inf, 3), (at, None, 0.5, 4)]
    )
    assert preview_rows(table) == (
        [("at", "timestamp"), ("day", "date"), ("x", "double"), ("n", "bigint")],
        [
            ("2020-05-01 10:00:00", "2020-05-01", None, None),
            (None, None, None, 3),
            ("2020-05-01 10:00:00", None, 0.5, 4),
        ],
    )


# The lookback check of a feature set: the days past the sample's newest event, computed (as the
# daily schedule does) before their source day 2020-07-18 is ingested, then an order of that
# day lands and the update runs.
JULY_18, JULY_19 = dt.date(2020, 7, 18), dt.date(2020, 7, 19)


def latest_lookback_check(instance: dg.DagsterInstance, name: str) -> tuple[str, bool, object]:
    """(run id, passed, missing days) of the latest evaluation of a feature set's check."""
    key = dg.AssetCheckKey(dg.AssetKey(name), LOOKBACK_CHECK)
    record = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)[0]
    assert record.event is not None and record.event.dagster_event is not None
    evaluation = record.event.dagster_event.event_specific_data
    return record.run_id, evaluation.passed, evaluation.metadata["missing_days"].value


@pytest.fixture(scope="module")
def repaired(built, tmp_path_factory):
    data_dir = Path(shutil.copytree(built[0], tmp_path_factory.mktemp("repaired") / "data"))
    instance = dg.DagsterInstance.ephemeral()
    resources = resources_for(data_dir)
    assets = [*SPECS, *(online_name(n) for n in SPECS)]
    first = run_assets(assets, instance, resources, JULY_18, JULY_19).run_id
    before = {name: latest_lookback_check(instance, name) for name in SPECS}
    (data_dir / "order_events" / "later-2020-07-18.csv").write_text(
        "order_id,order_timestamp,cpf,chargeback_timestamp\nj,2020-07-18 10:00:00,y,\n"
    )
    report = update(instance, resources)
    after = {name: latest_lookback_check(instance, name) for name in SPECS}
    return first, before, report, after


def test_a_lookback_check_passes_once_the_update_recomputes_from_the_ingested_day(
    repaired,
) -> None:
    first, before, report, after = repaired
    assert before == {name: (first, False, 1) for name in SPECS}
    assert report.ingested == {"order_events": [JULY_18], "chargeback_events": [JULY_18]}
    # July 19 read no order of July 18 then: its source changed
    assert report.recomputed["user_orders"] == [JULY_19]
    run_id, passed, missing = after["user_orders"]
    assert run_id in report.run_ids and (passed, missing) == (True, 0)


def test_a_lookback_check_passes_once_the_update_ingests_an_empty_missing_day(repaired) -> None:
    _, before, report, after = repaired
    assert before["user_chargebacks"][1:] == (False, 1)
    # no chargeback on July 18: the states of July 19 are right, but the check said otherwise
    run_id, passed, missing = after["user_chargebacks"]
    assert run_id in report.run_ids and (passed, missing) == (True, 0)
