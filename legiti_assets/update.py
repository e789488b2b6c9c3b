"""`make update`: bring every output up to date with the landing as it is now, rewriting only
what a change affects (how changes are noticed: `legiti_assets.changes`).

1. Validate the landing and fingerprint its days per raw event table; ingest the days whose
   stored rows differ (added, changed, moved or withdrawn orders: order days and chargeback
   days), and the days never ingested up to the newest event.
2. Recompute the feature-set days whose declaration or source days differ from those they were
   computed from (a changed day d: d + 1 .. d + lookback), and cover every day from the first
   event's to the day after the newest event. Each run mirrors its days into the online store.
3. Mirror again the online days the store does not record as mirroring their feature-set day.
4. Rebuild the training sets whose input tables changed since they were built.

Dagster runs a partitioned asset over one contiguous range of days per run
(dagster-io/dagster#32335), so an update is one run per range; its runs share the tag
`legiti/update`, and the last one records what the whole update did in its tags.
"""

import argparse
import datetime as dt
import os
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

import dagster as dg
from pyspark.sql import SparkSession

from legiti_assets import changes, layout, storage
from legiti_assets.assets.datasets import training_set_inputs
from legiti_assets.assets.raw import DATED_BY, raw_events
from legiti_assets.catalog import ONLINE_TABLES, SPECS, TRAINING
from legiti_assets.definitions import defs
from legiti_assets.io_managers import INPUTS
from legiti_assets.jobs import UPDATE
from legiti_assets.landing import keep_landing, read_landing_dir, release
from legiti_assets.partitions import FIRST_DAY, RANGE_RUN_ENV
from legiti_assets.resources import DataDir, OnlineStoreResource, SparkResource
from legiti_assets.run import (
    LOOKBACK_DAYS,
    QUIET,
    materialize_selection,
    range_tags,
    run_metadata,
    start_spark,
    stop_spark,
)

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
            lines.append(f"{name}: ingested {changes.describe(days)}")
        for name, days in self.recomputed.items():
            lines.append(f"{name}: recomputed {changes.describe(days)}")
            if self.mirrored.get(name):
                lines.append(
                    f"{name}_online: mirrored again {changes.describe(self.mirrored[name])}"
                )
            online = self.online.get(name)
            if online:
                lines.append(
                    f"{name}_online: {online['states_applied']} states written, "
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
            **{f"legiti/ingested/{n}": changes.describe(d) for n, d in self.ingested.items()},
            **{f"legiti/recomputed/{n}": changes.describe(d) for n, d in self.recomputed.items()},
            **{
                f"legiti/keys_reconciled/{n}": str(o["keys_reconciled"])
                for n, o in self.online.items()
            },
        }


def _by_range(
    days_per_asset: Mapping[str, list[dt.date]],
) -> dict[tuple[dt.date, dt.date], list[str]]:
    """Assets grouped by each contiguous range of days they need: one run per range."""
    runs: dict[tuple[dt.date, dt.date], list[str]] = {}
    for name, days in days_per_asset.items():
        for span in changes.contiguous(days):
            runs.setdefault(span, []).append(name)
    return dict(sorted(runs.items()))


# The online assets' counters an update adds up over its runs.
ONLINE_COUNTERS = (
    "states_offered",
    "states_applied",
    "keys_restored",
    "keys_removed",
    "keys_reconciled",
)


def _add_online(report: UpdateReport, name: str, metadata: Mapping[str, object]) -> None:
    merged = report.online.setdefault(name, {})
    for key in ONLINE_COUNTERS:
        merged[key] = int(merged.get(key, 0)) + int(metadata[key])  # type: ignore[call-overload]


def _built_from(data_dir: DataDir, training_set: str) -> str | None:
    """The fingerprint of the inputs a stored training set was built from."""
    commit = storage.latest_commit(data_dir.resolve(layout.dataset_table(training_set)))
    return None if commit is None else commit.facts.get(INPUTS)


def _landing_fingerprints(
    spark: SparkSession, data_dir: DataDir, report: UpdateReport
) -> dict[str, dict[dt.date, str]]:
    batch = read_landing_dir(spark, data_dir.landing_dir, dt.date.fromisoformat(FIRST_DAY))
    try:
        report.landing_orders = batch.orders
        return {
            name: changes.day_fingerprints(df, DATED_BY[name])
            for name, df in raw_events(batch.events).items()
        }
    finally:
        release(batch)


def update(
    instance: dg.DagsterInstance, resources: dict[str, object] | None = None
) -> UpdateReport:
    """Run the update; raise RunFailed naming the assets of a failed run, LandingFileError
    naming the file, line and field of an invalid landing."""
    resources = resources or dict(defs.resources or {})
    data_dir, spark_resource = resources["data_dir"], resources["spark"]
    online_store = resources["online_store"]
    assert isinstance(data_dir, DataDir) and isinstance(spark_resource, SparkResource)
    assert isinstance(online_store, OnlineStoreResource)
    report = UpdateReport(update_id=uuid.uuid4().hex[:8])
    report.landing_files = len(list(data_dir.landing_dir.glob("*.csv")))
    first_partition = dt.date.fromisoformat(FIRST_DAY)

    def run(selection: list[str], first: dt.date, last: dt.date) -> dict[str, Mapping]:
        result = materialize_selection(
            selection,
            instance,
            resources,
            {**range_tags(first, last), UPDATE_TAG: report.update_id},
        )
        report.run_ids.append(result.run_id)
        return run_metadata(result)

    with keep_landing():
        landing = _landing_fingerprints(spark_resource.spark_session, data_dir, report)
        event_days = [day for days in landing.values() for day in days]
        first_event = min(event_days, default=None)
        newest = max(event_days, default=None)

        # 1. raw days whose rows are not the landing's
        for name in DATED_BY:
            stored = storage.recorded(data_dir.resolve(layout.raw_table(name)))
            span = [*stored]
            if first_event is not None and newest is not None:
                # from the first feature day's lookback, as `make awesome-dataset` ingests
                lookback = first_event - dt.timedelta(days=LOOKBACK_DAYS)
                span += [max(lookback, first_partition), newest]
            report.ingested[name] = (
                changes.raw_days_to_ingest(landing[name], stored, min(span), max(span))
                if span
                else []
            )
        for (first, last), names in _by_range(report.ingested).items():
            run(names, first, last)

    # 2. feature-set days computed from other source rows, or not yet computed: every day from
    # the first event's (the training sets need them all) to the day after the newest event
    # (the first whose states count it)
    for spec in SPECS.values():
        stored = storage.recorded(
            data_dir.resolve(layout.feature_set_table(spec.entity, spec.name))
        )
        source = storage.recorded(data_dir.resolve(layout.raw_table(spec.source)))
        span = [*stored]
        if first_event is not None and newest is not None:
            span += [first_event, newest + dt.timedelta(days=1)]
        report.recomputed[spec.name] = (
            changes.stale_feature_days(
                stored, source, spec.version, spec.lookback_days, min(span), max(span)
            )
            if span
            else []
        )
    for (first, last), names in _by_range(report.recomputed).items():
        metadata = run([n for name in names for n in (name, f"{name}_online")], first, last)
        for name in names:
            _add_online(report, name, metadata[f"{name}_online"])

    # 3. online days that do not mirror their feature-set day: a run that failed after writing
    # the feature set, or left its online asset out, or another (empty) store
    with online_store.open() as store:
        for spec in SPECS.values():
            table = layout.feature_set_table(spec.entity, spec.name)
            mirrored = store.mirrored(ONLINE_TABLES[spec.name])
            report.mirrored[spec.name] = [
                day
                for day, record in storage.recorded(data_dir.resolve(table)).items()
                if mirrored.get(str(day)) != record.token
            ]
    for (first, last), names in _by_range(report.mirrored).items():
        metadata = run([f"{name}_online" for name in names], first, last)
        for name in names:
            _add_online(report, name, metadata[f"{name}_online"])

    # 4. training sets whose input tables changed since they were built
    stale = [
        name
        for name, (training_set, specs) in TRAINING.items()
        if _built_from(data_dir, name)
        != changes.tables_fingerprint(
            {data_dir.resolve(t): None for t in training_set_inputs(training_set, specs)}
        )
    ]
    if stale:
        result = materialize_selection(
            stale, instance, resources, {UPDATE_TAG: report.update_id, **report.tags()}
        )
        report.run_ids.append(result.run_id)
        for name, metadata in run_metadata(result).items():
            report.training_sets[name] = metadata.get("dagster/row_count")
    return report


def main(argv: list[str] | None = None) -> None:
    """`make update`: one run of the definitions' `update` job, what the landing sensor
    launches; the terminal gets its report (the runs' events are in the UI)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    os.environ.update(RANGE_RUN_ENV)
    start_spark()
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def(UPDATE).execute_in_process(
            instance=instance, run_config=QUIET, raise_on_error=False
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
