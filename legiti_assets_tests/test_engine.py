"""The engine against butterfree itself, and what it refuses to compute."""

import datetime as dt

import pytest
from butterfree.constants import DataType
from butterfree.transform.aggregated_feature_set import AggregatedFeatureSet
from butterfree.transform.features import Feature, KeyFeature, TimestampFeature
from butterfree.transform.transformations import AggregatedTransform
from butterfree.transform.utils import Function
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F

from legiti_assets import butterfree_compat
from legiti_assets.engine import DeclarationError, compute_states, feature_set_spec
from legiti_assets.feature_sets import FeatureSetSource
from legiti_assets_tests import oracle

START = dt.datetime(2020, 1, 1)
LAST = dt.date(2020, 1, 24)
EVENTS = "cpf string, t timestamp, x double, n int"


def declaration(
    features: list[Feature], windows: list[str], name: str = "s"
) -> AggregatedFeatureSet:
    return AggregatedFeatureSet(
        name=name,
        entity="user",
        description="d",
        keys=[KeyFeature(name="cpf", description="k", dtype=DataType.STRING)],
        timestamp=TimestampFeature(from_column="t"),
        features=features,
    ).with_windows(definitions=windows)


def feature(name: str, column: str, functions, dtype=DataType.DOUBLE, where=None) -> Feature:
    return Feature(
        name=name,
        description=f"{name} of {column}",
        from_column=column,
        transformation=AggregatedTransform(
            functions=[Function(f, dtype) for f in functions], filter_expression=where
        ),
    )


STATISTICS = [F.avg, F.min, F.max, F.sum, F.stddev_pop, F.stddev_samp, F.var_pop, F.variance]
EVERYTHING = declaration(
    [
        feature("x", "x", STATISTICS),
        feature("big", "x", [F.count, F.count_distinct], DataType.INTEGER, where="x >= 2"),
        feature("n", "n", [F.sum, F.min, F.max], DataType.BIGINT),
        feature("k", "n", [F.mean, F.stddev], where="n % 2 = 0"),
    ],
    ["2 days", "1 week"],
)

instants = st.one_of(
    # midnight, the last second of a day, and instants exactly whole days apart
    st.builds(
        lambda d, s: START + dt.timedelta(days=d, seconds=s),
        st.integers(0, 22),
        st.sampled_from([0, 1, 43200, 86399]),
    ),
    st.datetimes(min_value=START, max_value=dt.datetime(2020, 1, 23, 23, 59, 59)).map(
        lambda t: t.replace(microsecond=0)
    ),
)
events = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        instants,
        st.one_of(st.none(), st.sampled_from([0.0, 1.5, 2.0, 3.25, -1.0, 1e6 + 0.1])),
        st.one_of(st.none(), st.integers(-3, 10)),
    ),
    min_size=1,
    max_size=30,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=events, first=st.integers(0, 12))
def test_every_function_equals_butterfree(spark, rows, first) -> None:
    """avg, min, max, sum, stddev and variance (both kinds), count and exact distinct count,
    with and without filters, over ints and doubles, two windows: butterfree's rows."""
    df = spark.createDataFrame(rows, EVENTS)
    spec = feature_set_spec(FeatureSetSource(EVERYTHING, "events"))
    first_day = START.date() + dt.timedelta(days=first)
    ours = oracle.engine_rows(compute_states(df, spec, first_day, LAST))
    theirs = oracle.butterfree_rows(df, spec, EVERYTHING, first_day, LAST)
    oracle.assert_same_rows(ours, theirs, spec)


def _spec(fs: AggregatedFeatureSet, query: str | None = None):
    return feature_set_spec(FeatureSetSource(fs, "events", query))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: declaration([feature("f", "x", [F.mode])], ["1 day"]),
            "feature set s, feature f: function 'mode' is not supported",
        ),
        (
            lambda: declaration([feature("f", "x", [F.approx_count_distinct])], ["1 day"]),
            "feature set s, feature f: function 'approx_count_distinct' is not supported",
        ),
        (
            lambda: declaration([feature("f", "x", [F.collect_set])], ["1 day"]),
            "feature set s, feature f: function 'collect_set' is not supported",
        ),
        (
            lambda: declaration([feature("f", "x", [F.count], DataType.DOUBLE)], ["1 day"]),
            "feature set s, feature f: count is declared as DOUBLE; "
            "declare DataType.INTEGER or BIGINT",
        ),
        (
            lambda: declaration([feature("f", "x", [F.max], DataType.STRING)], ["1 day"]),
            "feature set s, feature f: max is declared as STRING; declare DataType.INTEGER, BIGINT",
        ),
        (
            lambda: declaration([feature("f", "x", [F.sum])], ["12 hours"]),
            "feature set s: window '12 hours' is not a whole number of days or weeks",
        ),
        (
            lambda: declaration([feature("f", "x", [F.sum])], ["1 year"]),
            "feature set s: window '1 year' is not a whole number of days or weeks",
        ),
        (
            lambda: declaration([feature("f", "x", [F.sum])], []),
            "feature set s: declare windows with .with_windows()",
        ),
        (
            lambda: declaration([feature("f", "x", [F.sum])], ["2 days"]).with_pivot("n", [1, 2]),
            "feature set s: pivots are not supported",
        ),
        (
            lambda: declaration([feature("f", "x", [F.sum])], ["2 days"]).with_distinct(["x"]),
            "feature set s: with_distinct is not supported",
        ),
        (
            lambda: declaration([feature("f", "x", [F.sum])], ["2 days"]).with_windows(
                ["2 days"], slide="12 hours"
            ),
            "feature set s: slide '12 hours' is not supported",
        ),
    ],
)
def test_what_the_engine_cannot_compute_is_refused_by_name(make, message) -> None:
    with pytest.raises(DeclarationError, match=message):
        _spec(make())


def test_butterfree_internals_follow_the_public_setters() -> None:
    """The one place reading butterfree's private attributes, checked against its setters."""
    fs = declaration([feature("f", "x", [F.sum])], ["2 days", "1 week"])
    assert butterfree_compat.internals(fs) == butterfree_compat.Internals(None, (), ("1 day",) * 2)
    fs.with_pivot("n", [1]).with_distinct(["x", "n"]).with_windows(["3 days"], slide="2 days")
    assert butterfree_compat.internals(fs) == butterfree_compat.Internals(
        "n", ("x", "n"), ("2 days",)
    )


def test_columns_lookback_and_weeks_follow_the_declaration() -> None:
    spec = _spec(EVERYTHING)
    assert spec.columns == ["cpf", "timestamp", *EVERYTHING.features_columns]
    assert spec.windows == (2, 7) and spec.lookback_days == 8
    by_column = {a.column: a for a in spec.aggregates}
    assert by_column["x__variance_over_1_week_rolling_windows"].function == "var_samp"
    assert by_column["k__stddev_over_2_days_rolling_windows"].function == "stddev_samp"
    assert by_column["k__mean_over_1_week_rolling_windows"].function == "avg"
    assert by_column["big__count_distinct_over_2_days_rolling_windows"].count_like
    assert not by_column["n__sum_over_2_days_rolling_windows"].count_like
    assert by_column["n__sum_over_2_days_rolling_windows"].dtype == "bigint"


def test_the_version_changes_with_what_is_computed_only() -> None:
    base = _spec(declaration([feature("f", "x", [F.sum])], ["2 days"])).version
    reworded = declaration([feature("f", "x", [F.sum])], ["2 days"])
    reworded.features[0].description = "another description"
    assert _spec(reworded).version == base
    for changed in (
        _spec(declaration([feature("f", "x", [F.sum])], ["3 days"])),
        _spec(declaration([feature("f", "x", [F.max])], ["2 days"])),
        _spec(declaration([feature("f", "x", [F.sum], where="x > 1")], ["2 days"])),
        _spec(declaration([feature("f", "x", [F.sum])], ["2 days"]), "select * from events"),
    ):
        assert changed.version != base


def test_a_float_window_that_empties_reads_null_not_a_residue(spark) -> None:
    """0.1 + 0.2 - 0.1 - 0.2 is 5.5e-17 as a running sum; each window is summed afresh."""
    fs = declaration(
        [feature("f", "x", [F.sum, F.avg]), feature("g", "x", [F.count], DataType.INTEGER)],
        ["2 days"],
    )
    df = spark.createDataFrame(
        [("a", START, 0.1, None), ("a", START + dt.timedelta(days=1), 0.2, None)], EVENTS
    )
    rows = oracle.engine_rows(compute_states(df, _spec(fs), START.date(), LAST))
    assert [r[1:] for r in rows] == [
        (dt.datetime(2020, 1, 2), 0.1, 0.1, 1),
        (dt.datetime(2020, 1, 3), 0.1 + 0.2, (0.1 + 0.2) / 2, 2),
        (dt.datetime(2020, 1, 4), 0.2, 0.2, 1),
        (dt.datetime(2020, 1, 5), None, None, 0),
    ]


def test_a_query_derives_and_filters_rows(spark) -> None:
    fs = declaration([feature("f", "y", [F.max])], ["1 day"])
    df = spark.createDataFrame(
        [("a", START, 2.0, 1), ("a", START, 5.0, 0), ("b", START, 1.0, 1)], EVENTS
    )
    spec = _spec(fs, "select cpf, t, x * 10 as y from events where n = 1")
    rows = oracle.engine_rows(compute_states(df, spec, START.date(), LAST))
    assert rows == [
        ("a", dt.datetime(2020, 1, 2), 20.0),
        ("a", dt.datetime(2020, 1, 3), None),
        ("b", dt.datetime(2020, 1, 2), 10.0),
        ("b", dt.datetime(2020, 1, 3), None),
    ]
    broken = _spec(fs, "select x as y from events")
    with pytest.raises(
        DeclarationError, match=r"feature set s: its query drops the columns \['cpf', 't'\]"
    ):
        compute_states(df, broken, START.date(), LAST)


def test_keys_and_timestamps_must_be_source_columns_as_they_are() -> None:
    def with_parts(key: KeyFeature, timestamp: TimestampFeature) -> AggregatedFeatureSet:
        return AggregatedFeatureSet(
            name="s",
            entity="user",
            description="d",
            keys=[key],
            timestamp=timestamp,
            features=[feature("f", "x", [F.sum])],
        ).with_windows(definitions=["2 days"])

    cpf = KeyFeature(name="cpf", description="k", dtype=DataType.STRING)
    with pytest.raises(DeclarationError, match="key cpf is declared as BIGINT"):
        _spec(
            with_parts(
                KeyFeature(name="cpf", description="k", dtype=DataType.BIGINT),
                TimestampFeature(from_column="t"),
            )
        )
    with pytest.raises(DeclarationError, match="key cpf must be a column of the source as it is"):
        _spec(
            with_parts(
                KeyFeature(
                    name="cpf", description="k", dtype=DataType.STRING, from_column="user_id"
                ),
                TimestampFeature(from_column="t"),
            )
        )
    with pytest.raises(DeclarationError, match="no mask, from_ms or transformation"):
        _spec(with_parts(cpf, TimestampFeature(from_column="t", mask="dd/MM/yyyy")))


def test_a_feature_set_is_dated_like_its_source() -> None:
    from legiti_assets.assets.feature_store import feature_set_asset

    fs = declaration([feature("f", "x", [F.sum])], ["2 days"])  # dated by `t`
    with pytest.raises(
        DeclarationError,
        match="feature set s: source 'order_events' is not a raw event asset dated by t",
    ):
        feature_set_asset(feature_set_spec(FeatureSetSource(fs, "order_events")))
