"""`make update` and the landing sensor's runs: bring every output up to date with the landing
as it is now, rewriting only what a change affects. It reads the store and the landing
(`observe`), plans (`planner.plan`: what each step rewrites, and why) and runs the plan
(`executor`), one run per step, each attributed to what launched the update; its runs share the
tag `legiti/update`, and the update's own run records what the whole update did in its tags and
log.
"""

import argparse
import contextlib
import datetime as dt
import os
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import dagster as dg

from legiti_assets import attribution, observe, planner
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
REPORT = "report"  # the update output's metadata entry: its report, one line an item
TODAY_TAG = "legiti/today"  # the day an update brings everything through (default: the UTC date)
THROUGH_TAG = "legiti/through"  # on an update's run: the day it brought everything through


@dataclass
class UpdateReport:
    """What an update did: days ingested per raw table, days recomputed per feature set, online
    keys whose state a correction replaced or removed, and the runs it launched."""

    update_id: str
    today: dt.date | None = None
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
            f"{self.landing_orders} orders" + (f", through {self.today}" if self.today else "")
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
        """The summary recorded on the update's run."""
        return {
            **({THROUGH_TAG: str(self.today)} if self.today else {}),
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


def update(
    instance: dg.DagsterInstance,
    resources: Mapping[str, object],
    *,
    parent: dg.DagsterRun | None = None,
    run_resources: Mapping[str, object] | None = None,
    resource_config: Mapping[str, object] | None = None,
    log: Callable[[str], None] = lambda _line: None,
    today: dt.date | None = None,
) -> UpdateReport:
    """Run the update through `today` (None: through the newest event and the day after it),
    its runs attributed to what launched `parent` (the update's run, if any) and bound to
    `run_resources` (default: `resources`) configured by `resource_config` (the update run's
    own, so they write the store it read), telling `log` the plan and each run as it ends;
    raise RunFailed naming the assets of a failed run, LandingFileError naming the file, line
    and field of an invalid landing."""
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
        files = len(landing_files(data_dir.landing_dir))
        log(f"reading the landing's {files} file(s) and the store's records")
        landing, orders = observe.landing(spark.spark_session, data_dir)
        with online_store.open() as store:
            stored = observe.stored(data_dir, store)
        plan = planner.plan(declared, stored, landing, today)
        report = UpdateReport(
            update_id=uuid.uuid4().hex[:8],
            today=today,
            landing_files=files,
            landing_orders=orders,
            ingested=dict(plan.ingest),
            recomputed=dict(plan.compute),
            mirrored=dict(plan.mirror),
        )
        through = f", through {today}" if today else ""
        log(f"planned {len(plan.steps)} run(s) over a landing of {orders} orders{through}")
        for number, step in enumerate(plan.steps, 1):
            log(f"run {number}: {', '.join(step.assets)}: {'; '.join(step.reasons)}")
        for number, step in enumerate(plan.steps, 1):
            if job_for(step.assets) != INGEST_EVENTS:
                landing_kept.close()
            result = run_step(
                step,
                instance,
                run_resources or resources,
                {UPDATE_TAG: report.update_id},
                parent,
                resource_config,
            )
            log(f"run {number} of {len(plan.steps)} succeeded: {result.run_id}")
            _add_results(report, result)
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
        resources = build_resources(data_dir, spark, online_store)
        report = update(
            context.instance,
            resources,
            parent=context.dagster_run,
            # the definitions the code location bound, not the run's configured instances: a
            # run records its job's snapshot, which re-execution compares with the loaded job's
            run_resources={
                n: d for n, d in context.job_def.resource_defs.items() if n in resources
            },
            resource_config={
                n: c for n, c in context.run_config.get("resources", {}).items() if n in resources
            },
            log=context.log.info,
            today=update_day(context.dagster_run),
        )
    except (LandingFileError, RunFailed) as error:
        raise dg.Failure(description=str(error)) from error
    lines = report.lines()
    for line in lines:
        context.log.info(line)
    # on the run a user opens: the Runs page shows and filters its tags
    context.instance.add_run_tags(context.run_id, report.tags())
    return dg.Output(
        lines,
        metadata={
            REPORT: dg.MetadataValue.md("\n".join(f"- {line}" for line in lines)),
            "runs": len(report.run_ids),
            "run_ids": ", ".join(report.run_ids),
        },
    )


def update_day(run: dg.DagsterRun) -> dt.date:
    """The day an update run brings everything through: its tag's, or the UTC date now, so
    every partition through today is stored and the online store holds today's states."""
    tag = run.tags.get(TODAY_TAG)
    if not tag:
        return dt.datetime.now(dt.UTC).date()
    try:
        return dt.date.fromisoformat(tag)
    except ValueError:
        raise dg.Failure(f"the run's tag {TODAY_TAG}={tag!r} is not a YYYY-MM-DD day") from None


def report_lines(events: Iterable[dg.DagsterEvent]) -> list[str]:
    """The report of an update's run, from its output's metadata among the run's events."""
    for event in events:
        if event.is_successful_output and event.step_output_data.metadata.get(REPORT):
            text = str(event.step_output_data.metadata[REPORT].value)
            return [line.removeprefix("- ") for line in text.split("\n")]
    raise ValueError("the run recorded no update report")


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
    job = dg.Definitions(jobs=[update_job], resources=resources).resolve_job_def(UPDATE)
    with dg.DagsterInstance.get() as instance:
        result = attribution.execute(job, instance, run_config=QUIET)
    stop_spark()
    if not result.success:
        failures = [
            failure.user_failure_data.description
            if failure.user_failure_data and failure.user_failure_data.description
            else str(failure.error.message if failure.error else "").strip()
            for failure in (e.step_failure_data for e in result.all_events if e.is_step_failure)
        ]
        raise SystemExit("\n".join(failures) or f"the update run {result.run_id} failed")
    print("\n".join(report_lines(result.all_events)))


if __name__ == "__main__":
    sys.exit(main())
