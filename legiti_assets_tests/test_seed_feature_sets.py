"""The seed's count feature sets through the engine, and the point-in-time join."""

import datetime as dt
import random

from legiti_assets.catalog import SPECS
from legiti_assets.engine import compute_states, feature_set_spec
from legiti_assets.feature_sets.user import user_orders
from legiti_assets.pit_join import asof_column, point_in_time_join
from legiti_assets_tests import reference

ORDERS = SPECS["user_orders"]
CHARGEBACKS = SPECS["user_chargebacks"]


def test_specs_follow_the_declarations() -> None:
    assert ORDERS.columns == user_orders.columns
    assert CHARGEBACKS.columns == [
        "cpf",
        "timestamp",
        "cpf_chargebacks__count_over_3_days_rolling_windows",
        "cpf_chargebacks__count_over_7_days_rolling_windows",
        "cpf_chargebacks__count_over_30_days_rolling_windows",
    ]
    assert [a.days for a in ORDERS.aggregates] == [3, 7, 30]
    assert ORDERS.lookback_days == 31
    assert (ORDERS.event_timestamp, CHARGEBACKS.event_timestamp) == (
        "order_timestamp",
        "chargeback_timestamp",
    )
    assert all(a.description for a in ORDERS.aggregates + CHARGEBACKS.aggregates)
    assert (ORDERS.source, CHARGEBACKS.source) == ("order_events", "chargeback_events")


def _events(spark, rows: list[tuple[str, dt.datetime]]):
    with_ids = [(f"o{i}", *row) for i, row in enumerate(rows)]
    return spark.createDataFrame(with_ids, "order_id string, cpf string, order_timestamp timestamp")


def _rows(df) -> list[tuple]:
    return sorted(tuple(r) for r in df.collect())


def test_window_edges_at_midnight(spark) -> None:
    """An event at exactly 00:00 of day d counts from d + 1 through d + w, and not on d + w + 1."""
    events = [("u", dt.datetime(2020, 1, 1)), ("u", dt.datetime(2020, 1, 1, 23, 59, 59))]
    got = _rows(
        compute_states(_events(spark, events), ORDERS, dt.date(2020, 1, 1), dt.date(2020, 3, 1))
    )
    assert got == [
        ("u", dt.datetime(2020, 1, 2), 2, 2, 2),
        ("u", dt.datetime(2020, 1, 5), 0, 2, 2),
        ("u", dt.datetime(2020, 1, 9), 0, 0, 2),
        ("u", dt.datetime(2020, 2, 1), 0, 0, 0),
    ]


def test_entering_and_leaving_on_the_same_day_is_no_change(spark) -> None:
    """An event leaving the 3-day window as another enters it: only longer windows change."""
    events = [("u", dt.datetime(2020, 1, 1, 5)), ("u", dt.datetime(2020, 1, 4, 5))]
    got = _rows(
        compute_states(_events(spark, events), ORDERS, dt.date(2020, 1, 5), dt.date(2020, 1, 5))
    )
    assert got == [("u", dt.datetime(2020, 1, 5), 1, 2, 2)]
    assert _rows(
        compute_states(
            _events(spark, [("u", dt.datetime(2020, 1, 1)), ("u", dt.datetime(2020, 1, 31))]),
            ORDERS,
            dt.date(2020, 2, 1),
            dt.date(2020, 2, 1),
        )
    ) == [("u", dt.datetime(2020, 2, 1), 1, 1, 1)]


def test_events_outside_the_lookback_are_ignored(spark) -> None:
    events = [("u", dt.datetime(2019, 1, 1)), ("u", dt.datetime(2020, 3, 1))]
    got = compute_states(_events(spark, events), ORDERS, dt.date(2020, 1, 1), dt.date(2020, 2, 28))
    assert _rows(got) == []


def test_random_events_match_the_reference_model(spark) -> None:
    rng = random.Random(11)
    start = dt.datetime(2020, 1, 1)
    events = [
        (f"u{rng.randrange(6)}", start + dt.timedelta(seconds=rng.randrange(90 * 86400)))
        for _ in range(300)
    ]
    first, last = dt.date(2020, 1, 20), dt.date(2020, 4, 20)
    got = _rows(compute_states(_events(spark, events), ORDERS, first, last))
    assert got == reference.feature_rows(events, first, last)
    assert len(got) > 100


def test_point_in_time_join_takes_each_feature_set_independently(spark) -> None:
    orders = spark.createDataFrame(
        [
            ("o1", dt.datetime(2020, 7, 15, 2), "x"),
            ("o2", dt.datetime(2020, 7, 16, 0), "x"),
            ("o3", dt.datetime(2020, 7, 1, 9), "new"),
        ],
        "order_id string, order_timestamp timestamp, cpf string",
    )
    order_states = spark.createDataFrame(
        [("x", dt.datetime(2020, 6, 13), 0, 0, 0), ("x", dt.datetime(2020, 7, 16), 1, 1, 1)],
        "cpf string, timestamp timestamp, a int, b int, c int",
    ).toDF(*ORDERS.columns)
    chargeback_states = spark.createDataFrame(
        [("x", dt.datetime(2020, 7, 15), 1, 1, 2), ("x", dt.datetime(2020, 7, 17), 0, 1, 2)],
        "cpf string, timestamp timestamp, a int, b int, c int",
    ).toDF(*CHARGEBACKS.columns)
    joined = point_in_time_join(
        orders,
        [(ORDERS, order_states), (CHARGEBACKS, chargeback_states)],
        timestamp="order_timestamp",
    )
    columns = [
        "order_id",
        asof_column("user_orders"),
        asof_column("user_chargebacks"),
        *[a.column for a in ORDERS.aggregates + CHARGEBACKS.aggregates],
    ]
    got = sorted(tuple(r) for r in joined.select(*columns).collect())
    assert got == [
        ("o1", dt.datetime(2020, 6, 13), dt.datetime(2020, 7, 15), 0, 0, 0, 1, 1, 2),
        # a state dated exactly at the order's instant applies to it
        ("o2", dt.datetime(2020, 7, 16), dt.datetime(2020, 7, 15), 1, 1, 1, 1, 1, 2),
        ("o3", None, None, 0, 0, 0, 0, 0, 0),
    ]


def test_the_training_set_covers_days_up_to_the_first_gap_in_the_history() -> None:
    from legiti_assets.pit_join import last_covered_day

    first = dt.date(2020, 1, 10)
    days = {first + dt.timedelta(days=i) for i in range(1, 6)}
    assert last_covered_day(set(), None) == dt.date.max
    assert last_covered_day(days, first) == dt.date(2020, 1, 15)
    assert last_covered_day(days - {dt.date(2020, 1, 13)}, first) == dt.date(2020, 1, 12)
    # states before the first event are all zero, whatever is materialized
    assert last_covered_day(days - {dt.date(2020, 1, 11)}, first) == first


def test_point_in_time_join_carries_a_states_own_nulls_and_fills_only_counts(spark) -> None:
    from legiti_assets_tests.extended_registry import DELAYS

    spec = feature_set_spec(DELAYS)
    names = [a.column for a in spec.aggregates]
    full = {n: (9 if n.startswith("late") else 1.5) for n in names}
    emptied = {n: (0 if n.startswith("late") else None) for n in names}
    states = spark.createDataFrame(
        [
            {"cpf": "x", "timestamp": dt.datetime(2020, 1, 2), **full},
            {"cpf": "x", "timestamp": dt.datetime(2020, 1, 9), **emptied},
        ],
        schema="cpf string, timestamp timestamp, "
        + ", ".join(f"{a.column} {a.dtype}" for a in spec.aggregates),
    )
    spine = spark.createDataFrame(
        [
            ("x", dt.datetime(2020, 1, 1)),
            ("x", dt.datetime(2020, 1, 5)),
            ("x", dt.datetime(2020, 2, 1)),
        ],
        "cpf string, t timestamp",
    )
    got = sorted(
        tuple(r)
        for r in point_in_time_join(spine, [(spec, states)], timestamp="t")
        .select("t", asof_column(spec.name), names[0], names[-1])
        .collect()
    )
    assert got == [
        (dt.datetime(2020, 1, 1), None, None, 0),  # no state yet: counts 0, the rest null
        (dt.datetime(2020, 1, 5), dt.datetime(2020, 1, 2), 1.5, 9),
        (dt.datetime(2020, 2, 1), dt.datetime(2020, 1, 9), None, 0),  # the emptied state's null
    ]
