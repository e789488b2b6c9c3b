"""Row-level asset checks, evaluated in one Spark aggregation over an asset's output."""

from collections.abc import Mapping

import dagster as dg
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F


def specs(asset: str, descriptions: Mapping[str, str]) -> list[dg.AssetCheckSpec]:
    """Blocking checks: a failure keeps downstream assets of the run from materializing."""
    return [
        dg.AssetCheckSpec(name, asset=asset, description=text, blocking=True)
        for name, text in descriptions.items()
    ]


def count_where(condition: Column) -> Column:
    return F.sum(F.when(condition, 1).otherwise(0))


def duplicates_of(*columns: str) -> Column:
    return F.count(F.lit(1)) - F.count_distinct(F.struct(*columns))


def evaluate(
    context: dg.AssetExecutionContext,
    df: DataFrame,
    asset: str,
    violations: Mapping[str, Column],
    metadata: Mapping[str, object] | None = None,
) -> list[dg.AssetCheckResult]:
    """Results of the checks of `asset` selected in this run: each passes when its
    `violations` aggregate is 0. One pass over `df` for all of them."""
    key = dg.AssetKey(asset)
    selected = [
        name
        for name in violations
        if dg.AssetCheckKey(key, name) in context.selected_asset_check_keys
    ]
    if not selected:
        return []
    row = df.agg(*[F.coalesce(violations[n], F.lit(0)).alias(n) for n in selected]).first()
    return [
        dg.AssetCheckResult(
            asset_key=key,
            check_name=name,
            passed=row[name] == 0,
            metadata={"violations": int(row[name]), **(metadata or {})},
        )
        for name in selected
    ]
