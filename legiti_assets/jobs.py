"""The jobs of the UI's Jobs page: what `make awesome-dataset`, `make update`, the daily schedule
and the landing sensor launch.

- `ingest_events`: the raw event tables for a day or a range of days.
- `compute_features`: the feature sets' daily states for a day or a range, mirrored into the online
  store, and the training sets rebuilt from them.
- `update`: one run that brings every output up to date with the landing, rewriting only what
  changed (`legiti_assets.update`).

Every run of these writes the store, so runs carry `WRITER_TAG`: dagster.yaml lets the run queue
start one of them at a time (the tables' locks would serialize their writes anyway, but a queued
run reads what the previous one wrote rather than waiting on a lock).
"""

import dagster as dg

from legiti_assets.partitions import daily_partitions
from legiti_assets.resources import DataDir, OnlineStoreResource, SparkResource

WRITER_TAG = "legiti/writes"
WRITER_TAGS = {WRITER_TAG: "store"}

INGEST_EVENTS = "ingest_events"
COMPUTE_FEATURES = "compute_features"
UPDATE = "update"

ingest_events_job = dg.define_asset_job(
    INGEST_EVENTS,
    selection=dg.AssetSelection.groups("raw"),
    partitions_def=daily_partitions,
    description="Ingest the landing's events of a day or a range of days into the raw tables.",
    tags=WRITER_TAGS,
)

compute_features_job = dg.define_asset_job(
    COMPUTE_FEATURES,
    selection=dg.AssetSelection.groups("feature_store", "online_store", "datasets"),
    partitions_def=daily_partitions,
    description="Compute the feature sets' states of a day or a range of days from the raw "
    "events, mirror them into the online store, and rebuild the training sets.",
    tags=WRITER_TAGS,
)


@dg.op(
    description="Bring every output up to date with the landing: ingest the changed days, "
    "recompute the feature-set days they reach, mirror them online, rebuild the training sets."
)
def update_store(
    context: dg.OpExecutionContext,
    data_dir: DataDir,
    spark: SparkResource,
    online_store: OnlineStoreResource,
) -> dg.Output[list[str]]:
    # imported here: the update launches the runs of the definitions, which list this job
    from legiti_assets.definitions import build_resources
    from legiti_assets.landing import LandingFileError
    from legiti_assets.run import RunFailed
    from legiti_assets.update import update

    try:
        report = update(context.instance, build_resources(data_dir, spark, online_store))
    except (LandingFileError, RunFailed) as error:
        raise dg.Failure(description=str(error)) from error
    lines = report.lines()
    for line in lines:
        context.log.info(line)
    return dg.Output(
        lines,
        metadata={
            "summary": dg.MetadataValue.md("\n".join(f"- {line}" for line in lines)),
            "runs": len(report.run_ids),
            "run_ids": ", ".join(report.run_ids),
        },
    )


@dg.job(
    name=UPDATE,
    description="Bring every output up to date with the landing, rewriting only what changed "
    "(one run; it records a run per contiguous range of days it rewrites).",
    tags=WRITER_TAGS,
    executor_def=dg.in_process_executor,
)
def update_job() -> None:
    update_store()


JOBS = [ingest_events_job, compute_features_job, update_job]
