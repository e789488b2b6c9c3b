"""`make update` and the landing sensor's runs: bring every output up to date with the landing
as it is now, rewriting only what a change affects. It reads the store and the landing
(`observe`), plans (`planner.plan`: what each step rewrites, and why) and runs the plan
(`executor`), one run per step; its runs share the tag `legiti/update`, and the last one records
what the whole update did in its tags.
"""

import argparse
import contextlib
import datetime as dt
import os
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

import dagster as dg

from legiti_assets import observe, planner
from legiti_assets.catalog import online_name
from legiti_assets.concurrency import WRITER_POOL
from legiti_assets.executor import (
    QUIET,
    RunFailed,
    StepResult,
    build_resources,
    run_step,
    start_spark,
    stop_spark,
)
from legiti_assets.jobs import INGEST_EVENTS, WRITER_TAGS, job_for
from legiti_assets.landing import LandingFileError, keep_landing, landing_files
from legiti_assets.partitions import RANGE_RUN_ENV
from legiti_assets.records import describe
from legiti_assets.resources import DataDir, OnlineStoreResource, SparkResource

UPDATE = "update"
UPDATE_TAG = "legiti/update"


@dataclass
class UpdateReport:
    """What an update did: days ingested per raw table, days recomputed per feature set, online
    keys whose state a correction replaced or removed, and the runs it launched."""

    update_id: str
    landing_files: int = 0
    landing_orders: int = 0
    ingested: dict[str, list[dt.date]] = field(default_factory=dict)
    recomputed: dict[str, list[dt.date]] = field(default_factory=dict)
    mirrored: dict[str, list[dt.date]] = field(default_factory=dict)
    online: dict[str, dict[str, object]] = field(default_factory=dict)
    training_sets: dict[str, object] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.run_ids)

    def lines(self) -> list[str]:
        lines = [
            f"update {self.update_id}: landing of {self.landing_files} file(s), "
            f"{self.landing_orders} orders"
        ]
        for name, days in self.ingested.items():
            lines.append(f"{name}: ingested {describe(days)}")
        for name, days in self.recomputed.items():
            lines.append(f"{name}: recomputed {describe(days)}")
            if self.mirrored.get(name):
                lines.append(f"{online_name(name)}: mirrored again {describe(self.mirrored[name])}")
            online = self.online.get(name)
            if online:
                lines.append(
                    f"{online_name(name)}: {online['states_applied']} states written, "
                    f"{online['keys_reconciled']} keys reconciled "
                    f"({online['keys_restored']} back to an earlier state, "
                    f"{online['keys_removed']} removed)"
                )
        for name, rows in self.training_sets.items():
            lines.append(f"{name}: rebuilt, {rows} rows")
        if not self.changed:
            lines.append("everything is up to date: nothing was rewritten")
        else:
            lines.append(f"{len(self.run_ids)} run(s) tagged {UPDATE_TAG}={self.update_id}")
        return lines

    def tags(self) -> dict[str, str]:
        """The summary recorded on the update's last run."""
        return {
            **{f"legiti/ingested/{n}": describe(d) for n, d in self.ingested.items()},
            **{f"legiti/recomputed/{n}": describe(d) for n, d in self.recomputed.items()},
            **{
                f"legiti/keys_reconciled/{n}": str(o["keys_reconciled"])
                for n, o in self.online.items()
            },
        }


# The online assets' counters an update adds up over its runs.
ONLINE_COUNTERS = (
    "states_offered",
    "states_applied",
    "keys_restored",
    "keys_removed",
    "keys_reconciled",
)


def _add_results(report: UpdateReport, result: StepResult) -> None:
    report.run_ids.append(result.run_id)
    for name in report.recomputed:
        metadata = result.metadata.get(online_name(name))
        if metadata is not None:
            merged = report.online.setdefault(name, {})
            for key in ONLINE_COUNTERS:
                merged[key] = int(merged.get(key, 0)) + int(metadata[key])  # type: ignore[call-overload]
    if result.step.first is None:
        for name in result.step.assets:
            report.training_sets[name] = result.metadata.get(name, {}).get("dagster/row_count")


def update(instance: dg.DagsterInstance, resources: Mapping[str, object]) -> UpdateReport:
    """Run the update; raise RunFailed naming the assets of a failed run, LandingFileError
    naming the file, line and field of an invalid landing."""
    data_dir, spark, online_store = (
        resources["data_dir"],
        resources["spark"],
        resources["online_store"],
    )
    assert isinstance(data_dir, DataDir) and isinstance(spark, SparkResource)
    assert isinstance(online_store, OnlineStoreResource)
    declared = observe.declarations()
    # the raw runs reuse the landing this read validated, while its files are unchanged; it is
    # freed once they are done
    with contextlib.ExitStack() as landing_kept:
        landing_kept.enter_context(keep_landing())
        landing, orders = observe.landing(spark.spark_session, data_dir)
        with online_store.open() as store:
            stored = observe.stored(data_dir, store)
        plan = planner.plan(declared, stored, landing)
        report = UpdateReport(
            update_id=uuid.uuid4().hex[:8],
            landing_files=len(landing_files(data_dir.landing_dir)),
            landing_orders=orders,
            ingested=dict(plan.ingest),
            recomputed=dict(plan.compute),
            mirrored=dict(plan.mirror),
        )
        for step in plan.steps:
            if job_for(step.assets) != INGEST_EVENTS:
                landing_kept.close()
            tags = {UPDATE_TAG: report.update_id}
            if step is plan.steps[-1] and step.first is None:
                tags.update(report.tags())
            _add_results(report, run_step(step, instance, resources, tags))
    return report


@dg.op(
    pool=WRITER_POOL,
    description="Bring every output up to date with the landing: ingest the changed days, "
    "recompute the feature-set days they reach, mirror them online, rebuild the training sets.",
)
def update_store(
    context: dg.OpExecutionContext,
    data_dir: DataDir,
    spark: SparkResource,
    online_store: OnlineStoreResource,
) -> dg.Output[list[str]]:
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


def main(argv: list[str] | None = None) -> None:
    """`make update`: one run of the `update` job, what the landing sensor launches; the
    terminal gets its report (the runs' events are in the UI)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    os.environ.update(RANGE_RUN_ENV)
    resources = build_resources(DataDir(), SparkResource())
    start_spark(resources)
    with dg.DagsterInstance.get() as instance:
        result = update_job.execute_in_process(
            resources=resources, instance=instance, run_config=QUIET, raise_on_error=False
        )
    stop_spark()
    if not result.success:
        failures = [
            failure.user_failure_data.description
            if failure.user_failure_data and failure.user_failure_data.description
            else str(failure.error.message if failure.error else "").strip()
            for failure in (e.step_failure_data for e in result.all_events if e.is_step_failure)
        ]
        raise SystemExit("\n".join(failures) or f"the update run {result.run_id} failed")
    print("\n".join(result.output_for_node("update_store")))


if __name__ == "__main__":
    sys.exit(main())
