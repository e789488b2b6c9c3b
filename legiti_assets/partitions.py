"""The daily partitions every time-partitioned asset shares, how feature sets look back, and
day-range helpers."""

import contextlib
import datetime as dt
import warnings
from collections.abc import Iterator

import dagster as dg

from legiti_assets.settings import first_day

# Days are UTC days; the first one bounds the oldest event the store accepts. Partitions are
# structure, not a run's configuration: every asset is defined over them when its module is
# imported, so the setting is read here, once per process, by every process that loads the code
# (code server, run workers, make targets) from the same environment.
FIRST_DAY = str(first_day())
daily_partitions = dg.DailyPartitionsDefinition(start_date=FIRST_DAY, end_offset=1)


@contextlib.contextmanager
def beta_parameters() -> Iterator[None]:
    """Defining assets with the two beta parameters the design rests on: single-run backfills
    (`backfill_policy`) and lookbacks reaching before the first day
    (`allow_nonexistent_upstream_partitions`). Dagster warns at every definition, in every
    process and terminal; the tests pin their behaviour instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        yield


SINGLE_RUN = dg.BackfillPolicy.single_run()


def lookback(days: int) -> dg.TimeWindowPartitionMapping:
    """Partition D depends on the events of days D - days .. D - 1."""
    with beta_parameters():
        return dg.TimeWindowPartitionMapping(
            start_offset=-days, end_offset=-1, allow_nonexistent_upstream_partitions=True
        )


def days_of(window: dg.TimeWindow) -> list[dt.date]:
    """The days of a partition time window (a range run's window spans several)."""
    first, end = window.start.date(), window.end.date()
    return [first + dt.timedelta(days=i) for i in range((end - first).days)]


# Dagster's supported settings for runs over ranges of days, set by the entry points (make
# awesome-dataset, make update, make dev):
# - Before a range run starts, Dagster records a "planned" event per asset and day (~4 ms each:
#   18 s of the sample's main job); with the first it records one per asset, naming the range.
#   The price: the days of a failed range run show as missing in the UI, not as failed (the run
#   shows failed).
# - A range run records a materialization per asset and day; with the second, each output's are
#   stored as one batch (one insert in PostgreSQL, whose storage otherwise opens a connection
#   per statement: the sample's main job took 283 s there, 64 s batched).
RANGE_RUN_ENV = {
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1",
    "DAGSTER_EVENT_BATCH_SIZE": "1000",
}


def range_tags(first: dt.date, last: dt.date) -> dict[str, str]:
    """The tags of a run over the partitions first..last (one run for the whole range)."""
    return {
        "dagster/asset_partition_range_start": str(first),
        "dagster/asset_partition_range_end": str(last),
    }
