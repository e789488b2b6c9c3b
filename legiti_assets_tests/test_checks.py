"""Row checks and day profiles: one pass counts each day's rows, fingerprints and violations."""

import datetime as dt
import random

import dagster as dg
import pytest
from pyspark.sql import Column, Window
from pyspark.sql import functions as F

from legiti_assets import changes, checks, landing, layout, records, storage
from legiti_assets.assets import feature_store
from legiti_assets.catalog import SPECS
from legiti_assets.io_managers import write_days
from legiti_assets.resources import DataDir
from legiti_assets.schemas import spark_ddl, state_schema

EVENTS = "order_id string, order_timestamp timestamp, cpf string, chargeback_timestamp timestamp"
MAY = dt.date(2020, 5, 1)


def at(day: int, hour: int = 0) -> dt.datetime:
    return dt.datetime(2020, 5, 1 + day, hour)


def _repeats(*columns: str) -> Column:
    """A window condition: true on every row but one of each set of rows with equal `columns`
    (nulls equal)."""
    key = [F.col(c) for c in columns]
    return F.row_number().over(Window.partitionBy(*key).orderBy(*key)) > 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_profile_matches_a_model_of_its_rows(spark, seed: int) -> None:
    rnd = random.Random(seed)
    rows = [
        (
            rnd.choice(["a", "b", "c", "d", None]),
            rnd.choice([at(rnd.randrange(5), rnd.randrange(24)), None]),
            rnd.choice(["x", "y", None]),
            None,
        )
        for _ in range(rnd.randrange(0, 60))
    ]
    df = spark.createDataFrame(rows, EVENTS)
    found = changes.profile(
        df,
        "order_timestamp",
        fingerprint=True,
        counts={
            "repeats": _repeats("order_id", "cpf"),
            "no_cpf": F.col("cpf").isNull(),
            # null for rows without a time: counted as not met
            "morning": F.hour("order_timestamp") < 12,
        },
    )
    days: dict[dt.date | None, int] = {}
    for _, ts, _, _ in rows:
        day = ts.date() if ts else None
        days[day] = days.get(day, 0) + 1
    assert found.rows == days
    assert found.total == len(rows)
    assert found.content == changes.day_fingerprints(df, "order_timestamp")
    assert found.content is not None
    assert {day: records.rows_of(c) for day, c in found.content.items()} == days
    assert found.counts == {
        # across days: a key seen on two days is a repeat as much as twice on one
        "repeats": len(rows) - len({(o, c) for o, _, c, _ in rows}),
        "no_cpf": sum(c is None for _, _, c, _ in rows),
        "morning": sum(ts is not None and ts.hour < 12 for _, ts, _, _ in rows),
    }


def test_profile_of_an_undated_table_has_one_group(spark) -> None:
    df = spark.createDataFrame([("a",), ("a",), ("b",)], "order_id string")
    found = changes.profile(df, None, counts={"repeats": _repeats("order_id")})
    assert found.rows == {None: 3}
    assert found.content is None
    assert found.counts == {"repeats": 1}


def test_the_landing_pass_profiles_each_raw_table_and_counts_its_checks(spark) -> None:
    """The pass that validates the landing profiles both raw tables: each day's rows and
    fingerprint (the same as a profile of the table's rows) and each check's broken rows, on
    rows the validation would refuse (they reach no table, but a guard must count them)."""
    rows = [
        ("o1", at(0, 10), "x", at(1, 9), False),  # o1 twice: the later one repeats it
        ("o1", at(2, 10), "y", None, False),  # ... in order_events only
        ("o2", at(1, 10), None, None, False),  # no user
        ("o3", at(5, 10), "x", at(1, 9), False),  # charged back before the order
        ("o4", at(2, 10), "z", None, False),
        ("o5", None, "z", None, True),  # a line with problems
        ("o6", at(3, 1), "w", at(4, 1), False),  # o6 twice, charged back both times
        ("o6", at(3, 2), "w", at(4, 2), False),
    ]
    flagged = spark.createDataFrame(rows, f"{EVENTS}, _bad boolean")
    bad, found = landing.profile_raw_tables(flagged)
    assert bad == 1
    violations = {
        name: {str(d): r.violations for d, r in sorted(days.items())}
        for name, days in found.items()
    }
    assert violations == {
        "order_events": {
            "2020-05-01": {"unique_order_id": 0, "non_null_keys": 0},
            "2020-05-02": {"unique_order_id": 0, "non_null_keys": 1},
            "2020-05-03": {"unique_order_id": 1, "non_null_keys": 0},
            "2020-05-04": {"unique_order_id": 1, "non_null_keys": 0},
            "2020-05-06": {"unique_order_id": 0, "non_null_keys": 0},
        },
        "chargeback_events": {
            "2020-05-02": {
                "unique_order_id": 0,
                "non_null_keys": 0,
                "chargeback_after_order": 1,
            },
            "2020-05-05": {
                "unique_order_id": 1,
                "non_null_keys": 0,
                "chargeback_after_order": 0,
            },
        },
    }
    good = flagged.where(~F.col("_bad")).select(*landing.EVENT_COLUMNS)
    for name, dated_by in landing.DATED_BY.items():
        table = good.where(F.col(dated_by).isNotNull())
        assert {d: r.content for d, r in found[name].items()} == changes.day_fingerprints(
            table, dated_by
        )
        assert {d: r.rows for d, r in found[name].items()} == changes.profile(table, dated_by).rows


def test_feature_set_checks_count_each_broken_row(spark) -> None:
    spec = SPECS["user_orders"]
    days = [MAY, MAY + dt.timedelta(days=1)]
    rows = [
        ("u1", at(0), 1, 2, 3),
        ("u1", at(0), 1, 2, 3),  # the same key and time twice
        ("u2", at(1), 2, 1, 3),  # 7 days count fewer than 3
        ("u3", at(1, 5), 0, 0, 0),  # not at 00:00
        (None, at(1), -1, 0, 0),  # no key, a negative count
        ("u4", at(1), 0, 0, 4),
    ]
    states = spark.createDataFrame(rows, spark_ddl(state_schema(spec)))
    found = changes.profile(
        states, "timestamp", counts=feature_store._violations(spec, days)
    ).counts
    assert found == {
        "non_null_key_and_timestamp": 1,
        "dated_inside_partition": 1,
        "non_negative_counts": 1,
        "counts_grow_with_window": 1,
    }


def test_a_feature_set_write_counts_the_rows_repeating_a_time_and_key(spark, tmp_path) -> None:
    """`unique_key_and_timestamp`, counted in the write: each extra row of a (key, time), a
    null key equal to a null key; one key on two days, across a month's end, is no repeat."""
    spec = SPECS["user_orders"]
    key = dg.AssetKey(spec.name)
    (asset,) = [a for a in feature_store.FEATURE_SET_ASSETS if key in a.keys]
    metadata = asset.metadata_by_key[key]
    jan31, feb1 = dt.datetime(2020, 1, 31), dt.datetime(2020, 2, 1)
    keys_and_times = [
        *[("u1", jan31)] * 3,  # two repeats
        *[(None, feb1)] * 2,  # one
        ("u1", feb1),
        ("u2", jan31),
        ("u2", feb1),
    ]
    rows = [(k, t, i, i, i) for i, (k, t) in enumerate(keys_and_times)]
    states = spark.createDataFrame(rows, spark_ddl(state_schema(spec)))
    data = DataDir(path=str(tmp_path))
    written = write_days(
        spark,
        data,
        spec.name,
        metadata,
        [jan31.date(), feb1.date()],
        "r",
        states,
        count_repeats=True,
    )
    assert written.repeats == 3
    table = data.resolve(layout.feature_set_table(spec.entity, spec.name))
    assert storage.committed_rows(table, written.version) == len(rows)
    assert storage.read(spark, table).columns == states.columns


@pytest.mark.parametrize("seed", [1, 2])
def test_repeated_rows_counts_as_repeats_does(spark, seed: int) -> None:
    rnd = random.Random(seed)
    values = [rnd.choice(["a", "b", "c", None, *map(str, range(40))]) for _ in range(60)]
    df = spark.createDataFrame([(v,) for v in values], "order_id string")
    expected = changes.profile(df, None, counts={"r": _repeats("order_id")}).counts["r"]
    assert expected > 0
    assert checks.repeated_rows(df, "order_id") == expected
    assert checks.repeated_rows(df.dropDuplicates(), "order_id") == 0


@pytest.mark.parametrize("n", [0, 7])
def test_counted_counts_the_rows_a_delta_write_wrote(spark, tmp_path, n: int) -> None:
    """The counts come with the write, an empty one included; no write: an error, not a hang."""
    df = spark.range(n).withColumn("odd", F.col("id") % 2 == 1)
    written = checks.Counted(df, {"odd": F.col("odd"), "big": F.col("id") > 4})
    written.df.write.format("delta").mode("overwrite").save(str(tmp_path / "t"))
    assert written.counts() == {checks.ROWS: n, "odd": n // 2, "big": max(n - 5, 0)}


def test_counted_without_a_write_raises(spark, monkeypatch) -> None:
    monkeypatch.setattr(checks, "COUNTS_TIMEOUT_S", 0.5)
    with pytest.raises(RuntimeError, match="no counts"):
        checks.Counted(spark.range(3), {}).counts()


def _training_set_checks(data_dir) -> dict[str, tuple[bool, int]]:
    """Each check of `awesome_dataset` built in `data_dir`: (passed, violations)."""
    import dagster as dg

    from legiti_assets.definitions import definitions
    from legiti_assets.jobs import COMPUTE_FEATURES
    from legiti_assets_tests.helpers import resources_for

    job = definitions(resources_for(data_dir)).resolve_job_def(COMPUTE_FEATURES)
    result = job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        asset_selection=[dg.AssetKey("awesome_dataset")],
        raise_on_error=False,
    )
    return {
        e.check_name: (e.passed, e.metadata["violations"].value)
        for e in result.get_asset_check_evaluations()
    }


def test_training_set_checks_count_what_a_wrong_join_wrote(
    built_sample, tmp_path, monkeypatch
) -> None:
    """A join that repeats a spine row with a state from its future: each check of the stored
    training set counts it, and the stored rows are compared with the spine's."""
    import shutil

    from legiti_assets.assets import datasets
    from legiti_assets.pit_join import asof_column

    data_dir = tmp_path / "data"
    shutil.copytree(built_sample, data_dir)
    join = datasets.point_in_time_join

    def wrong(spine, feature_sets, *, timestamp):
        joined = join(spine, feature_sets, timestamp=timestamp)
        future = F.col(timestamp) + F.expr("INTERVAL 1 DAY")
        return joined.unionByName(joined.limit(1).withColumn(asof_column("user_orders"), future))

    monkeypatch.setattr(datasets, "point_in_time_join", wrong)
    assert _training_set_checks(data_dir) == {
        "one_row_per_order": (False, 1),
        "point_in_time": (False, 1),
        "row_count_equals_orders": (False, 1),
    }


def test_an_order_stored_twice_fails_one_row_per_order(spark, built_sample, tmp_path) -> None:
    """order_events holding an order twice (as a partial re-ingestion of an order moved between
    days can leave it): the join keeps both rows, and only one_row_per_order counts it."""
    import shutil

    from legiti_assets import layout

    data_dir = tmp_path / "data"
    shutil.copytree(built_sample, data_dir)
    table = str(data_dir / layout.raw_table("order_events"))
    first = spark.read.format("delta").load(table).orderBy("order_timestamp").limit(1)
    first.write.format("delta").mode("append").save(table)
    assert _training_set_checks(data_dir) == {
        "one_row_per_order": (False, 1),
        "point_in_time": (True, 0),
        "row_count_equals_orders": (True, 0),
    }
