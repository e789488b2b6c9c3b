"""Daily partitions through the real assets: ranges, re-runs, and refused input."""

import datetime as dt
import random
from pathlib import Path

import dagster as dg
import pytest

from legiti_assets import storage
from legiti_assets.assets import ASSETS
from legiti_assets_tests.helpers import (
    FEATURE_STORE,
    feature_rows,
    read_table,
    resources_for,
    write_landing,
)

FEATURE_SETS = ["user_orders", "user_chargebacks"]


def materialize(
    data_dir: Path, selection: list[str], first: str, last: str, instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        ASSETS,
        selection=selection,
        resources=resources_for(data_dir),
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
        },
        raise_on_error=False,
    )


def days(first: str, last: str) -> list[str]:
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return [str(start + dt.timedelta(days=i)) for i in range((end - start).days + 1)]


def ingest(data_dir: Path, instance: dg.DagsterInstance, first: str, last: str) -> None:
    result = materialize(data_dir, ["order_events", "chargeback_events"], first, last, instance)
    assert result.success


def snapshot(data_dir: Path) -> dict[str, list[tuple]]:
    return {name: feature_rows(data_dir, name) for name in FEATURE_SETS}


def test_a_range_equals_its_days_run_one_at_a_time_in_any_order(sample_dir, tmp_path) -> None:
    other = tmp_path / "day_by_day"
    write_landing(other, (sample_dir / "order_events" / "input.csv").read_text())
    first, last = "2020-05-10", "2020-05-18"
    by_range, by_day = dg.DagsterInstance.ephemeral(), dg.DagsterInstance.ephemeral()
    for data_dir, instance in ((sample_dir, by_range), (other, by_day)):
        ingest(data_dir, instance, "2020-04-01", last)

    assert materialize(sample_dir, FEATURE_SETS, first, last, by_range).success
    shuffled = days(first, last)
    random.Random(7).shuffle(shuffled)
    for day in shuffled:
        assert materialize(other, FEATURE_SETS, day, day, by_day).success

    assert snapshot(sample_dir) == snapshot(other)
    assert ("x", dt.datetime(2020, 5, 14), 3, 4, 4) in snapshot(sample_dir)["user_orders"]


def test_rematerializing_a_day_replaces_exactly_that_day(sample_dir) -> None:
    instance = dg.DagsterInstance.ephemeral()
    ingest(sample_dir, instance, "2020-04-01", "2020-05-16")
    assert materialize(sample_dir, ["user_orders"], "2020-05-10", "2020-05-16", instance).success
    before = feature_rows(sample_dir, "user_orders")
    assert [r for r in before if r[1] == dt.datetime(2020, 5, 12)] == [
        ("x", dt.datetime(2020, 5, 12), 2, 2, 2),
        ("z", dt.datetime(2020, 5, 12), 1, 1, 1),
    ]

    # orders d and e (both 2020-05-11) were wrong: without them nothing changes on 2020-05-12
    landing = sample_dir / "order_events" / "input.csv"
    lines = landing.read_text().splitlines()
    landing.write_text("\n".join(line for line in lines if line[:2] not in ("d,", "e,")) + "\n")
    ingest(sample_dir, instance, "2020-05-11", "2020-05-11")
    assert dt.date(2020, 5, 11) not in storage.stored_days(sample_dir / "raw/order_events")
    assert storage.recorded(sample_dir / "raw/order_events")[dt.date(2020, 5, 11)].rows == 0
    assert materialize(sample_dir, ["user_orders"], "2020-05-12", "2020-05-12", instance).success

    after = feature_rows(sample_dir, "user_orders")
    table = sample_dir / FEATURE_STORE / "user_orders"
    assert dt.date(2020, 5, 12) in storage.recorded(table)
    assert after == [r for r in before if r[1] != dt.datetime(2020, 5, 12)]


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("j,2020-05-32 10:00:00,x,", "order_timestamp"),
        ("j,2020-05-12 10:00:00,,", "cpf"),
        ("a,2020-05-12 10:00:00,x,", "order_id"),  # a already exists with other values
    ],
)
def test_a_bad_landing_file_fails_clearly_and_keeps_what_was_stored(
    sample_dir, line: str, field: str
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    ingest(sample_dir, instance, "2020-05-10", "2020-05-14")
    raw = sample_dir / "raw" / "order_events"
    stored = read_table(raw)
    files = sorted(p.relative_to(raw) for p in raw.rglob("*.parquet"))

    landing = sample_dir / "order_events" / "input.csv"
    landing.write_text(landing.read_text() + line + "\n")
    result = materialize(
        sample_dir, ["order_events", "chargeback_events"], "2020-05-10", "2020-05-14", instance
    )

    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert f"line 11, field {field}" in failure.message
    assert str(landing) in failure.message
    assert read_table(raw) == stored
    assert sorted(p.relative_to(raw) for p in raw.rglob("*.parquet")) == files
