"""The daily partitions every time-partitioned asset shares, how feature sets look back, and
day-range helpers."""

import datetime as dt

import dagster as dg

# Days are UTC days; the first one bounds the oldest event the store accepts.
FIRST_DAY = "2010-01-01"
daily_partitions = dg.DailyPartitionsDefinition(start_date=FIRST_DAY, end_offset=1)


def lookback(days: int) -> dg.TimeWindowPartitionMapping:
    """Partition D depends on the events of days D - days .. D - 1."""
    return dg.TimeWindowPartitionMapping(
        start_offset=-days, end_offset=-1, allow_nonexistent_upstream_partitions=True
    )


def days_of(window: dg.TimeWindow) -> list[dt.date]:
    """The days of a partition time window (a range run's window spans several)."""
    first, end = window.start.date(), window.end.date()
    return [first + dt.timedelta(days=i) for i in range((end - first).days)]
