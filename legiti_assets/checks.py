"""Row-level asset checks: each counts the rows that break it, in the one pass over an asset's
output that also counts its rows per day (`changes.profile`)."""

from collections.abc import Mapping

import dagster as dg
from pyspark.sql import Column, Window
from pyspark.sql import functions as F


def specs(asset: str, descriptions: Mapping[str, str]) -> list[dg.AssetCheckSpec]:
    """Blocking checks: a failure keeps downstream assets of the run from materializing."""
    return [
        dg.AssetCheckSpec(name, asset=asset, description=text, blocking=True)
        for name, text in descriptions.items()
    ]


def repeats(*columns: str) -> Column:
    """True on every row but one of each set of rows with equal `columns` (nulls equal): as
    many rows as there are duplicates."""
    key = [F.col(c) for c in columns]
    return F.row_number().over(Window.partitionBy(*key).orderBy(*key)) > 1


def results(
    context: dg.AssetExecutionContext,
    asset: str,
    violations: Mapping[str, int],
) -> list[dg.AssetCheckResult]:
    """Results of the checks of `asset` selected in this run: each passes when it counted no
    violation."""
    key = dg.AssetKey(asset)
    return [
        dg.AssetCheckResult(
            asset_key=key,
            check_name=name,
            passed=count == 0,
            metadata={"violations": count},
        )
        for name, count in violations.items()
        if dg.AssetCheckKey(key, name) in context.selected_asset_check_keys
    ]
