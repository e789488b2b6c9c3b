"""`make awesome-dataset`: materialize the whole graph for a range of days in one process.

Two runs of the definitions' jobs (`ingest_events` over the range and the feature sets'
lookback, then `compute_features` over the range: feature sets, online store, training sets) share
one Spark session and are recorded in `$DAGSTER_HOME`, so they show up in the UI's run history.
`dagster job launch` or a backfill from the UI does the same.
"""

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
from pyspark.errors import PySparkRuntimeError
from pyspark.sql import SparkSession

from legiti_assets import layout
from legiti_assets.assets.datasets import TRAINING_SET_ASSETS
from legiti_assets.assets.feature_store import FEATURE_SET_ASSETS
from legiti_assets.assets.online import ONLINE_ASSETS
from legiti_assets.assets.raw import order_and_chargeback_events
from legiti_assets.catalog import SPECS
from legiti_assets.definitions import definitions, defs
from legiti_assets.jobs import COMPUTE_FEATURES, INGEST_EVENTS
from legiti_assets.landing import landing_files
from legiti_assets.partitions import FIRST_DAY, RANGE_RUN_ENV, range_tags
from legiti_assets.resources import DataDir, OnlineStoreResource, SparkResource


def _names(assets: list[dg.AssetsDefinition]) -> list[str]:
    return [key.to_user_string() for a in assets for key in a.keys]


# The assets of each of the main job's runs: the jobs' selections.
RAW_RUN = _names([order_and_chargeback_events])
FEATURE_RUN = _names([*FEATURE_SET_ASSETS, *ONLINE_ASSETS, *TRAINING_SET_ASSETS])
# Events are ingested this many days before the first feature-set day.
LOOKBACK_DAYS = max(spec.lookback_days for spec in SPECS.values())

# Every event is in the run's history in the UI; the terminal gets problems only (printing the
# per-day events of a range run at DEBUG level costs several ms each).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def first_order_day(landing: Path) -> dt.date | None:
    """The landing's first order day (over all its files: a restated order can only make the
    true one later), or None if it cannot tell (ingestion will say why)."""
    days = []
    for path in landing_files(landing):
        try:
            with path.open("rb") as handle:  # a local file or an object store's
                column = pv.read_csv(
                    handle,
                    convert_options=pv.ConvertOptions(
                        include_columns=["order_timestamp"],
                        column_types={"order_timestamp": pa.string()},
                    ),
                ).column("order_timestamp")
            first = pc.min(column).as_py()
            if first:
                days.append(dt.date.fromisoformat(first[:10]))
        except (pa.ArrowInvalid, ValueError, OSError):
            return None
    return min(days, default=None)


def plan(
    start: dt.date, end: dt.date, first_event: dt.date | None = None
) -> list[tuple[list[str], dict[str, str]]]:
    """(assets, run tags) of each run. Events are ingested from `LOOKBACK_DAYS` before `start`,
    so the first days' states count every event of their windows, and from the first event
    on, so the training set can tell which orders have their whole history stored."""
    if end < start:
        raise ValueError(f"END {end} is before START {start}")
    first = dt.date.fromisoformat(FIRST_DAY)
    if start < first:
        raise ValueError(f"START {start} is before the first partition {first}")
    raw_start = max(start - dt.timedelta(days=LOOKBACK_DAYS), first)
    if first_event is not None:
        raw_start = max(min(raw_start, first_event), first)
    return [
        (RAW_RUN, range_tags(raw_start, end)),
        (FEATURE_RUN, range_tags(start, end)),
    ]


class RunFailed(Exception):
    """A run of the main job or of an update failed; the message names its assets."""


def materialize_selection(
    selection: list[str],
    instance: dg.DagsterInstance,
    resources: dict[str, object],
    tags: dict[str, str] | None = None,
    partition_key: str | None = None,
) -> dg.ExecuteInProcessResult:
    """One run of `selection` with its checks, as a run of the job that holds it (the raw
    tables: `ingest_events`, the rest: `compute_features`); raise RunFailed if it fails."""
    name = INGEST_EVENTS if set(selection) <= set(RAW_RUN) else COMPUTE_FEATURES
    job = definitions(resources).resolve_job_def(name)
    result = job.execute_in_process(
        instance=instance,
        tags=tags,
        partition_key=partition_key,
        asset_selection=[dg.AssetKey(asset) for asset in selection],
        run_config=QUIET,
        raise_on_error=False,
    )
    if not result.success:
        raise RunFailed(f"the {job.name} run {result.run_id} of {', '.join(selection)} failed")
    return result


def run_metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, object]]:
    """Each materialized asset's metadata values (a range run records one event per day, each
    with the whole write's metadata: the first is kept)."""
    found: dict[str, dict[str, object]] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        name = materialization.asset_key.to_user_string()
        if name not in found:
            found[name] = {k: v.value for k, v in materialization.metadata.items()}
    return found


def materialize(
    start: dt.date,
    end: dt.date,
    instance: dg.DagsterInstance,
    resources: dict[str, object] | None = None,
) -> None:
    """Run `plan(start, end)`; raise RunFailed naming the assets of a failed run."""
    resources = resources or dict(defs.resources or {})
    data_dir = resources["data_dir"]
    assert isinstance(data_dir, DataDir)
    for selection, tags in plan(start, end, first_order_day(data_dir.landing_dir)):
        result = materialize_selection(selection, instance, resources, tags)
        for name, metadata in run_metadata(result).items():
            for key, unit in (
                ("dagster/row_count", "rows"),
                ("rows_written_in_run", "rows"),
                ("states_applied", "states written"),
                ("keys_reconciled", "keys reconciled"),
            ):
                if key in metadata:
                    print(f"{name}: {metadata[key]} {unit}")


def start_spark() -> None:
    """Boot the definitions' Spark session in the background: the main job's and an update's
    runs all use it, and its JVM starts while Dagster's instance and first run are set up."""
    spark = (defs.resources or {})["spark"]
    assert isinstance(spark, SparkResource)
    spark.start_in_background()


def stop_spark() -> None:
    """Stop the runs' session, if one started, so a cluster's master frees its executors now
    rather than when the process exits. Started on another thread, it is not this thread's
    active session: `active` falls back to the process's default one."""
    try:
        session = SparkSession.active()
    except PySparkRuntimeError:
        return
    session.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--start", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--end", type=dt.date.fromisoformat, required=True)
    args = parser.parse_args(argv)
    os.environ.update(RANGE_RUN_ENV)
    start_spark()
    with dg.DagsterInstance.get() as instance:
        try:
            materialize(args.start, args.end, instance)
        except RunFailed as error:
            raise SystemExit(f"{error}: its events are in the UI (make dev)") from None
    stop_spark()
    root = DataDir().root
    print(f"historical feature store: {root / layout.FEATURE_STORE_DIR}")
    print(f"training datasets:        {root / layout.DATASETS_DIR}")
    print(f"online feature store:     {OnlineStoreResource(data=DataDir()).redacted_url()}")


if __name__ == "__main__":
    sys.exit(main())
