"""Property-based: random events and random partition schedules against the reference model."""

import datetime as dt
import random
import shutil
from pathlib import Path

import dagster as dg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from legiti_assets.assets import ASSETS
from legiti_assets.catalog import SPECS
from legiti_assets.engine import compute_states
from legiti_assets.pit_join import point_in_time_join
from legiti_assets_tests import reference
from legiti_assets_tests.helpers import feature_rows, resources_for, write_landing

BASE = dt.datetime(2020, 1, 1)
ORDERS, CHARGEBACKS = SPECS["user_orders"], SPECS["user_chargebacks"]

# instants that stress the window edges: midnight, the last second, and 3/7/30 days apart
seconds = st.one_of(st.just(0), st.just(86_399), st.integers(0, 86_399))
instants = st.builds(
    lambda day, second: BASE + dt.timedelta(days=day, seconds=second),
    st.one_of(st.sampled_from([0, 3, 7, 30, 31, 37]), st.integers(0, 60)),
    seconds,
)
users = st.sampled_from(["u1", "u2", "u3"])
lateness = st.one_of(
    st.none(),
    st.just(dt.timedelta(0)),
    st.builds(lambda s: dt.timedelta(seconds=s), st.integers(0, 120 * 86_400)),
)
orders = st.lists(st.tuples(users, instants, lateness), min_size=1, max_size=25)
PROPERTY_SETTINGS = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _rows(df) -> list[tuple]:
    return sorted(tuple(r) for r in df.collect())


@PROPERTY_SETTINGS
@given(
    events=st.lists(st.tuples(users, instants), max_size=30),
    first=st.integers(0, 70),
    length=st.integers(0, 40),
)
def test_feature_sets_equal_the_reference(spark, events, first, length) -> None:
    start = BASE.date() + dt.timedelta(days=first)
    end = start + dt.timedelta(days=length)
    df = spark.createDataFrame(
        [(f"o{i}", *e) for i, e in enumerate(events)],
        "order_id string, cpf string, order_timestamp timestamp",
    )
    got = _rows(compute_states(df, ORDERS, start, end))
    assert got == reference.feature_rows(events, start, end)


@PROPERTY_SETTINGS
@given(generated=orders)
def test_awesome_dataset_equals_the_reference(spark, generated) -> None:
    rows = [
        (f"o{i}", t, cpf, None if late is None else t + late)
        for i, (cpf, t, late) in enumerate(generated)
    ]
    df = spark.createDataFrame(
        rows,
        "order_id string, order_timestamp timestamp, cpf string, chargeback_timestamp timestamp",
    )
    first = min(t for _, t, _, _ in rows).date()
    last = max(t for _, t, _, _ in rows).date()
    states = [
        (
            spec,
            compute_states(df.where(f"{spec.event_timestamp} is not null"), spec, first, last),
        )
        for spec in (ORDERS, CHARGEBACKS)
    ]
    joined = point_in_time_join(df, states, timestamp="order_timestamp")
    columns = [
        "order_id",
        "order_timestamp",
        "chargeback_timestamp",
        "cpf",
        *[c.column for spec in (ORDERS, CHARGEBACKS) for c in spec.aggregates],
    ]
    expected = reference.dataset_rows((o, t, cpf, cb) for o, t, cpf, cb in rows)
    assert _rows(joined.select(*columns)) == expected


# --- random partition schedules through the real assets -----------------------------------

WINDOW = [dt.date(2020, 5, 1) + dt.timedelta(days=i) for i in range(6)]


def _landing() -> str:
    rng = random.Random(5)
    lines = ["order_id,order_timestamp,cpf,chargeback_timestamp"]
    for i in range(120):
        t = dt.datetime(2020, 4, 1) + dt.timedelta(seconds=rng.randrange(45 * 86_400))
        cb = t + dt.timedelta(days=rng.randrange(20)) if rng.random() < 0.3 else None
        lines.append(f"o{i},{t:%Y-%m-%d %H:%M:%S},u{rng.randrange(8)},{cb or ''}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, spark) -> Path:
    """Raw events of the window and its lookback, ingested once."""
    data_dir = tmp_path_factory.mktemp("ingested")
    write_landing(data_dir, _landing())
    result = dg.materialize(
        ASSETS,
        selection=["order_events", "chargeback_events"],
        resources=resources_for(data_dir),
        instance=dg.DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": "2020-03-31",
            "dagster/asset_partition_range_end": str(WINDOW[-1]),
        },
    )
    assert result.success
    return data_dir


def _run(data_dir: Path, instance, first: dt.date, last: dt.date) -> None:
    result = dg.materialize(
        ASSETS,
        selection=["user_orders", "user_chargebacks"],
        resources=resources_for(data_dir),
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": str(first),
            "dagster/asset_partition_range_end": str(last),
        },
    )
    assert result.success


schedules = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 5)).map(sorted), min_size=1, max_size=3
)


@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(runs=schedules, reverse_days=st.booleans())
def test_any_schedule_gives_the_same_store(ingested, tmp_path_factory, runs, reverse_days) -> None:
    """Overlapping ranges in any order, then every day not yet covered one at a time (in
    reverse or not): the store equals the contract for the whole window."""
    data_dir = tmp_path_factory.mktemp("schedule")
    shutil.copytree(ingested, data_dir, dirs_exist_ok=True)
    instance = dg.DagsterInstance.ephemeral()
    covered: set[int] = set()
    for a, b in runs:
        _run(data_dir, instance, WINDOW[a], WINDOW[b])
        covered |= set(range(a, b + 1))
    rest = sorted(set(range(len(WINDOW))) - covered, reverse=reverse_days)
    for i in rest:
        _run(data_dir, instance, WINDOW[i], WINDOW[i])

    events = [line.split(",") for line in _landing().splitlines()[1:]]
    parse = dt.datetime.fromisoformat
    orders_ = [(cpf, parse(t)) for _, t, cpf, _ in events]
    chargebacks = [(cpf, parse(cb)) for _, _, cpf, cb in events if cb]
    assert feature_rows(data_dir, "user_orders") == reference.feature_rows(
        orders_, WINDOW[0], WINDOW[-1]
    )
    assert feature_rows(data_dir, "user_chargebacks") == reference.feature_rows(
        chargebacks, WINDOW[0], WINDOW[-1]
    )
