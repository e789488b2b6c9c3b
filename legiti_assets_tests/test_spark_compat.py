"""The one private pyspark call: Arrow collection returns exactly what `collect` does."""

import math
from decimal import Decimal

from legiti_assets.spark_compat import python_rows

BIG = 2**62 + 1  # not a float: a detour through float64 would change it


def test_python_rows_are_collect_exactly(spark) -> None:
    df = spark.createDataFrame(
        [
            ("a", BIG, None, 1.5, Decimal("12.345")),
            ("b", -3, 7, float("nan"), None),
            (None, 0, -(2**63), None, Decimal("-0.001")),
        ],
        "k string, big long, n long, x double, d decimal(10,3)",
    ).repartition(3)  # several batches

    def by_key(rows):
        return sorted(rows, key=lambda row: (row[0] is None, row[0] or ""))

    expected = by_key(tuple(row) for row in df.collect())
    got = by_key(python_rows(df))
    assert len(got) == 3
    for want, have in zip(expected, got, strict=True):
        assert [type(v) for v in want] == [type(v) for v in have]
        # NaN != NaN: compare it as such
        assert [("nan" if isinstance(v, float) and math.isnan(v) else v) for v in want] == [
            ("nan" if isinstance(v, float) and math.isnan(v) else v) for v in have
        ]
    assert {row[0] for row in got} == {"a", "b", None}
    assert next(r for r in got if r[0] == "a")[1] == BIG


def test_python_rows_of_nothing(spark) -> None:
    assert list(python_rows(spark.createDataFrame([], "k string, v long"))) == []
