"""The engine against butterfree itself, and what it refuses to compute."""

import datetime as dt

from butterfree.constants import DataType
from butterfree.transform.aggregated_feature_set import AggregatedFeatureSet
from butterfree.transform.features import Feature, KeyFeature, TimestampFeature
from butterfree.transform.transformations import AggregatedTransform
from butterfree.transform.utils import Function
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F

from legiti_assets.engine import compute_states, feature_set_spec
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
    oracle.assert_same_rows(ours, theirs)
