"""How the store notices change: day fingerprints, input fingerprints, stale days, manifests."""

import datetime as dt

from legiti_assets import changes, records
from legiti_assets.records import DayRecord


def d(day: int) -> dt.date:
    return dt.date(2020, 5, 1) + dt.timedelta(days=day)


def test_fingerprints_change_with_any_row_of_their_day(spark) -> None:
    schema = (
        "order_id string, order_timestamp timestamp, cpf string, chargeback_timestamp timestamp"
    )
    placed, charged = dt.datetime(2020, 5, 1, 10), dt.datetime(2020, 5, 3, 9)
    rows = [("a", placed, "x", None), ("b", placed, "y", charged)]
    base = changes.day_fingerprints(spark.createDataFrame(rows, schema), "order_timestamp")
    assert list(base) == [d(0)] and base[d(0)].startswith("2:")
    variants = [
        [rows[0]],  # withdrawn
        [rows[0], ("b", placed, "y", None)],  # chargeback taken back
        [rows[0], ("b", placed, "x", charged)],  # another user
        [rows[0], ("b", placed + dt.timedelta(seconds=1), "y", charged)],  # another time
        # the same values in other columns: a null is not just skipped
        [("a", placed, "x", placed), ("b", placed, "y", None)],
        [("x", placed, "a", None), rows[1]],  # two columns' values swapped
    ]
    for variant in variants:
        found = changes.day_fingerprints(spark.createDataFrame(variant, schema), "order_timestamp")
        assert found[d(0)] != base[d(0)], variant
    # row order does not matter
    again = changes.day_fingerprints(spark.createDataFrame(rows[::-1], schema), "order_timestamp")
    assert again == base
    assert changes.day_fingerprints(spark.createDataFrame([], schema), "order_timestamp") == {}


def test_raw_days_to_ingest() -> None:
    stored = {
        d(0): DayRecord(content="1:5"),
        d(1): DayRecord(content=records.EMPTY),
        d(3): DayRecord(),
    }
    landing = {d(0): "1:5", d(2): "2:9", d(3): "1:1"}
    # d(1) stays empty; d(2) never ingested; d(3) written before fingerprints; d(4) new, empty
    assert records.raw_days_to_ingest(landing, stored, d(0), d(4)) == [d(2), d(3), d(4)]
    # a withdrawn day's stored rows differ from the landing's none
    assert records.raw_days_to_ingest({}, stored, d(0), d(1)) == [d(0)]


def test_a_source_day_makes_the_next_lookback_days_stale() -> None:
    source = {d(i): DayRecord(content=f"1:{i}") for i in range(-5, 12)}
    stored = {
        d(i): DayRecord(version="v1", inputs=records.inputs_fingerprint(source, d(i), 3))
        for i in range(0, 10)
    }
    assert records.stale_feature_days(stored, source, "v1", 3, d(0), d(9)) == []
    changed = {**source, d(4): DayRecord(content="2:4")}
    # a change of day 4 reaches the states of days 5, 6 and 7
    assert records.stale_feature_days(stored, changed, "v1", 3, d(0), d(9)) == [d(5), d(6), d(7)]
    # days past the stored ones, and every day of another declaration
    assert records.stale_feature_days(stored, source, "v1", 3, d(8), d(11)) == [d(10), d(11)]
    assert records.stale_feature_days(stored, source, "v2", 3, d(0), d(1)) == [d(0), d(1)]
    # a source day never ingested is neither an empty one nor one with rows: ingesting it, even
    # empty, makes the days that read it stale (their lookback check flagged it)
    missing = {k: v for k, v in source.items() if k != d(2)}
    empty = {**source, d(2): DayRecord(content=records.EMPTY)}
    fingerprints = {records.inputs_fingerprint(days, d(3), 3) for days in (missing, empty, source)}
    assert len(fingerprints) == 3
    computed = {d(3): DayRecord(version="v1", inputs=records.inputs_fingerprint(missing, d(3), 3))}
    assert records.stale_feature_days(computed, empty, "v1", 3, d(3), d(3)) == [d(3)]


def test_contiguous_and_describe() -> None:
    days = [d(5), d(0), d(1), d(2), d(9), d(1)]
    assert records.contiguous(days) == [(d(0), d(2)), (d(5), d(5)), (d(9), d(9))]
    assert records.describe(days) == "5 days: 2020-05-01..2020-05-03, 2020-05-06, 2020-05-10"
    assert records.describe([]) == "none"
    assert records.describe([d(i * 2) for i in range(8)]).endswith(", ... (2 more ranges)")
