"""`make awesome-dataset`: materialize the whole graph for a range of days in one process.

The planner's `plan_range` and the executor: a run of `ingest_events` over the range and the
feature sets' lookback, one of `compute_features` over the range (feature sets and online
store), one of the training sets. They share one Spark session and are recorded in
`$DAGSTER_HOME`, so they show up in the UI's run history. A backfill from the UI does the same.
"""

import argparse
import datetime as dt
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv

from legiti_assets import layout, observe, planner
from legiti_assets.executor import (
    RunFailed,
    StepResult,
    build_resources,
    run_step,
    start_spark,
    stop_spark,
)
from legiti_assets.io_managers import RUN_ROWS
from legiti_assets.landing import landing_files
from legiti_assets.partitions import RANGE_RUN_ENV
from legiti_assets.resources import DataDir, OnlineStoreResource, SparkResource

# A landing file is read in blocks of this size: its first day takes one column, and the whole
# column would stay in this process's memory for the rest of the run.
_BLOCK_BYTES = 1 << 20


def first_order_day(landing: Path) -> dt.date | None:
    """The landing's first order day (over all its files: a restated order can only make the
    true one later), or None if it cannot tell (ingestion will say why)."""
    days = []
    for path in landing_files(landing):
        try:
            with path.open("rb") as handle:  # a local file or an object store's
                reader = pv.open_csv(
                    handle,
                    read_options=pv.ReadOptions(block_size=_BLOCK_BYTES),
                    convert_options=pv.ConvertOptions(
                        include_columns=["order_timestamp"],
                        column_types={"order_timestamp": pa.string()},
                    ),
                )
                mins = (pc.min(batch.column(0)).as_py() for batch in reader)
                first = min(filter(None, mins), default=None)
            if first:
                days.append(dt.date.fromisoformat(first[:10]))
        except (pa.ArrowInvalid, ValueError, OSError):
            return None
    return min(days, default=None)


def materialize(
    start: dt.date,
    end: dt.date,
    instance: dg.DagsterInstance,
    resources: Mapping[str, object],
) -> list[StepResult]:
    """Run `planner.plan_range(start, end)`, printing each table's rows; raise RunFailed naming
    the assets of a failed run."""
    data_dir = resources["data_dir"]
    assert isinstance(data_dir, DataDir)
    plan = planner.plan_range(
        observe.declarations(), start, end, first_order_day(data_dir.landing_dir)
    )
    results = []
    for step in plan.steps:
        result = run_step(step, instance, resources)
        results.append(result)
        for name, metadata in result.metadata.items():
            # the run's totals: a daily asset's metadata (its first day's) has that day's rows
            # as dagster/row_count, and the run's as RUN_ROWS
            figures = {
                "rows": metadata.get(RUN_ROWS, metadata.get("dagster/row_count")),
                "states written": metadata.get("states_applied"),
                "keys reconciled": metadata.get("keys_reconciled"),
            }
            for unit, value in figures.items():
                if value is not None:
                    print(f"{name}: {value} {unit}")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--start", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--end", type=dt.date.fromisoformat, required=True)
    args = parser.parse_args(argv)
    os.environ.update(RANGE_RUN_ENV)
    resources = build_resources(DataDir(), SparkResource())
    start_spark(resources)
    with dg.DagsterInstance.get() as instance:
        try:
            materialize(args.start, args.end, instance, resources)
        except ValueError as error:  # START or END out of bounds
            raise SystemExit(str(error)) from None
        except RunFailed as error:
            raise SystemExit(f"{error}: its events are in the UI (make dev)") from None
    stop_spark()
    root = DataDir().root
    print(f"historical feature store: {root / layout.FEATURE_STORE_DIR}")
    print(f"training datasets:        {root / layout.DATASETS_DIR}")
    print(f"online feature store:     {OnlineStoreResource(data=DataDir()).redacted_url()}")


if __name__ == "__main__":
    sys.exit(main())
