"""Runs a plan (`legiti_assets.planner`) through Dagster, one run per step, in this process and
its one Spark session (`run_step`: `make awesome-dataset`, and the `update` job that `make
update`, the landing sensor and the daily schedule launch). Each run is a run of the asset job
that holds its assets, over the step's range of days, and carries the step's reasons as a tag.
"""

from collections.abc import Mapping
from dataclasses import dataclass

import dagster as dg
from pyspark.errors import PySparkRuntimeError
from pyspark.sql import SparkSession

from legiti_assets import attribution
from legiti_assets.assets import ASSET_CHECKS, ASSETS
from legiti_assets.io_managers import DeltaIOManager
from legiti_assets.jobs import ASSET_JOBS, job_for
from legiti_assets.partitions import range_tags
from legiti_assets.planner import Step
from legiti_assets.resources import DataDir, OnlineStoreResource, SparkResource

REASON_TAG = "legiti/reason"
# Every event is in the run's history in the UI; the terminal gets problems only (printing the
# per-day events of a range run at DEBUG level costs several ms each).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def build_resources(
    data_dir: DataDir, spark: SparkResource, online_store: OnlineStoreResource | None = None
) -> dict[str, object]:
    """Resources for a data directory: the defaults in definitions.py, temp dirs in the tests."""
    online_store = online_store or OnlineStoreResource(data=data_dir)
    return {
        "data_dir": data_dir,
        "spark": spark,
        "online_store": online_store,
        "delta_io_manager": DeltaIOManager(spark=spark, data=data_dir),
    }


def bound(resources: Mapping[str, object]) -> dg.Definitions:
    """The assets, checks and asset jobs, bound to `resources`."""
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=ASSET_CHECKS,
        jobs=ASSET_JOBS,
        resources=resources,
        # One process and one Spark session per run: each step in its own process would pay a
        # JVM start and could not share cached DataFrames.
        executor=dg.in_process_executor,
    )


class RunFailed(Exception):
    """A run of a plan failed; the message names its job, run and assets."""


@dataclass(frozen=True)
class StepResult:
    """A step's run and each materialized asset's metadata values (a range run records one
    event per day, each with its day's figures and the run's totals; the first day's is kept:
    read the totals, `run_rows` and the online counters, not a daily asset's
    `dagster/row_count`)."""

    step: Step
    run_id: str
    metadata: dict[str, dict[str, object]]


def partition_key(step: Step) -> str | None:
    """A step of a single day runs as that day's partition (the UI shows it as such)."""
    return str(step.first) if step.first is not None and step.first == step.last else None


def step_tags(step: Step) -> dict[str, str]:
    """The run tags of a step: its range of days (of more than one), and why it runs."""
    tags = {REASON_TAG: "; ".join(step.reasons)}
    if step.first is not None and step.last is not None and step.first != step.last:
        tags.update(range_tags(step.first, step.last))
    return tags


def run_step(
    step: Step,
    instance: dg.DagsterInstance,
    resources: Mapping[str, object],
    tags: Mapping[str, str] | None = None,
    parent: dg.DagsterRun | None = None,
    resource_config: Mapping[str, object] | None = None,
) -> StepResult:
    """One run of the step's assets with their checks, attributed to the code location and to
    what launched `parent` (the run executing it, if any), its resources configured by
    `resource_config` (the parent run's, if it had any); raise RunFailed if it fails."""
    job = bound(resources).resolve_job_def(job_for(step.assets))
    result = attribution.execute(
        job,
        instance,
        tags={**step_tags(step), **(tags or {})},
        partition_key=partition_key(step),
        asset_selection=[dg.AssetKey(asset) for asset in step.assets],
        run_config={**QUIET, **({"resources": dict(resource_config)} if resource_config else {})},
        parent=parent,
    )
    if not result.success:
        raise RunFailed(f"the {job.name} run {result.run_id} of {', '.join(step.assets)} failed")
    metadata: dict[str, dict[str, object]] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        name = materialization.asset_key.to_user_string()
        if name not in metadata:
            metadata[name] = {k: v.value for k, v in materialization.metadata.items()}
    return StepResult(step=step, run_id=result.run_id, metadata=metadata)


def start_spark(resources: Mapping[str, object]) -> None:
    """Boot the runs' Spark session in the background: every run of a plan uses it, and its JVM
    starts while Dagster's instance and first run are set up."""
    spark = resources["spark"]
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
