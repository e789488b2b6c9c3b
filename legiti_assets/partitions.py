"""The daily partitions every time-partitioned asset shares, and how feature sets look back."""

import dagster as dg

from legiti_assets.feature_sets import USER_FEATURE_SETS
from legiti_assets.rolling import rolling_count_spec

# Days are UTC days; the first one bounds the oldest event the store accepts.
FIRST_DAY = "2010-01-01"
daily_partitions = dg.DailyPartitionsDefinition(start_date=FIRST_DAY, end_offset=1)

LOOKBACK_DAYS = max(rolling_count_spec(fs).lookback_days for fs in USER_FEATURE_SETS)

# Partition D of a feature set depends on the events of days D - LOOKBACK_DAYS .. D - 1.
feature_lookback = dg.TimeWindowPartitionMapping(
    start_offset=-LOOKBACK_DAYS, end_offset=-1, allow_nonexistent_upstream_partitions=True
)
