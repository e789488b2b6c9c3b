"""Asset-oriented feature store: Dagster assets over butterfree feature sets on Spark.

`get_historical_features` is the public entry for point-in-time retrieval. Nothing is imported
here until it is called: importing the package stays cheap.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, overload

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame as SparkDataFrame


@overload
def get_historical_features(
    spine: pd.DataFrame,
    feature_sets: Sequence[str],
    *,
    timestamp: str,
    data_dir: str | Path | None = None,
    as_of: dt.datetime | None = None,
) -> pd.DataFrame: ...


@overload
def get_historical_features(
    spine: SparkDataFrame,
    feature_sets: Sequence[str],
    *,
    timestamp: str,
    data_dir: str | Path | None = None,
    as_of: dt.datetime | None = None,
) -> SparkDataFrame: ...


def get_historical_features(
    spine: pd.DataFrame | SparkDataFrame,
    feature_sets: Sequence[str],
    *,
    timestamp: str,
    data_dir: str | Path | None = None,
    as_of: dt.datetime | None = None,
) -> pd.DataFrame | SparkDataFrame:
    """The spine's rows, each with the state of every named feature set at `timestamp`, from
    the historical store under `data_dir` as it was at instant `as_of` (naive: UTC; default:
    now). A pandas spine is answered in pandas without starting a JVM
    (`retrieval.get_historical_features_pandas`, which keeps the spine's row order); a Spark
    one by Spark (`pit_join.get_historical_features`). Same contract, same values.
    """
    import pandas as pd

    if isinstance(spine, pd.DataFrame):
        from legiti_assets.retrieval import get_historical_features_pandas

        return get_historical_features_pandas(
            spine, feature_sets, timestamp=timestamp, data_dir=data_dir, as_of=as_of
        )
    from legiti_assets.pit_join import get_historical_features as spark_historical_features

    return spark_historical_features(
        spine, feature_sets, timestamp=timestamp, data_dir=data_dir, as_of=as_of
    )
