"""The daily schedule and the landing sensor, evaluated with Dagster's own APIs at a given time
and landing state, and the runs they request executed through the definitions' jobs."""

import datetime as dt
import os
import shutil
import time
from pathlib import Path

import dagster as dg
import pytest

from legiti_assets import attribution
from legiti_assets.automation import SETTLE_SECONDS, daily_schedule, landing_sensor
from legiti_assets.catalog import ONLINE_TABLES
from legiti_assets.definitions import definitions, defs
from legiti_assets.executor import QUIET, REASON_TAG
from legiti_assets.jobs import COMPUTE_FEATURES
from legiti_assets.resources import DataDir
from legiti_assets.update import TODAY_TAG, UPDATE, report_lines, update_day
from legiti_assets_tests.helpers import feature_rows, resources_for, t

HEADER = "order_id,order_timestamp,cpf,chargeback_timestamp\n"


@pytest.fixture
def sample_dir(built_sample, tmp_path) -> Path:
    return Path(shutil.copytree(built_sample, tmp_path / "data"))


def _tick(data_dir: Path, when: str) -> dg.RunRequest | dg.SkipReason:
    context = dg.build_schedule_context(
        scheduled_execution_time=dt.datetime.fromisoformat(when).replace(tzinfo=dt.UTC),
        resources={"data_dir": DataDir(path=str(data_dir))},
        repository_def=defs.get_repository_def(),
    )
    result = daily_schedule.evaluate_tick(context)
    if result.skip_message:
        return dg.SkipReason(result.skip_message)
    assert result.run_requests is not None and len(result.run_requests) == 1
    return result.run_requests[0]


def test_the_schedule_requests_the_update_through_the_new_day(sample_dir) -> None:
    assert daily_schedule.cron_schedule == "5 0 * * *"
    assert daily_schedule.execution_timezone == "UTC"
    assert daily_schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert daily_schedule.job_name == UPDATE
    # the store holds every day through the sample's last: nothing to do that day
    skipped = _tick(sample_dir, "2020-07-17 00:05:00")
    assert isinstance(skipped, dg.SkipReason)
    assert skipped.skip_message == "every output is stored through 2020-07-17 already, and current"
    # the next day: the update through it, keyed by it, saying why before it runs
    request = _tick(sample_dir, "2020-07-18 00:05:00")
    assert isinstance(request, dg.RunRequest)
    assert request.run_key == "2020-07-18"
    assert request.tags[TODAY_TAG] == "2020-07-18"
    assert request.tags[REASON_TAG] == (
        "the new day 2020-07-18: order_events: not stored through 2020-07-18; "
        "chargeback_events: not stored through 2020-07-18; "
        "user_orders: 1 day: 2020-07-18, never computed; "
        "user_chargebacks: 1 day: 2020-07-18, never computed; "
        "awesome_dataset: inputs rewritten above"
    )
    # days missed (the schedule was off): the same update covers them
    request = _tick(sample_dir, "2020-08-20 00:05:01")
    assert isinstance(request, dg.RunRequest)
    assert request.tags[TODAY_TAG] == "2020-08-20"
    assert (
        "user_orders: 34 days: 2020-07-18..2020-08-20, never computed" in (request.tags[REASON_TAG])
    )


def test_nothing_is_scheduled_before_the_first_build(tmp_path) -> None:
    (tmp_path / "order_events").mkdir()
    skipped = _tick(tmp_path, "2020-07-18 00:05:00")
    assert isinstance(skipped, dg.SkipReason)


def test_the_daily_run_slides_the_windows_with_no_new_event(sample_dir) -> None:
    """x's last orders are h (07-15) and i (07-16): its counts fall to 0 as days pass."""
    request = _tick(sample_dir, "2020-08-20 00:05:00")
    assert isinstance(request, dg.RunRequest)
    instance = dg.DagsterInstance.ephemeral()
    job = definitions(resources_for(sample_dir)).resolve_job_def(UPDATE)
    # as the daemon launches it: the schedule's tag on the run
    tags = {**request.tags, "dagster/schedule_name": "daily_schedule"}
    result = attribution.execute(job, instance, tags=tags, run_config=QUIET)
    assert result.success
    assert report_lines(result.all_events)[1:4] == [
        "order_events: ingested 34 days: 2020-07-18..2020-08-20",
        "chargeback_events: ingested 34 days: 2020-07-18..2020-08-20",
        "user_orders: recomputed 34 days: 2020-07-18..2020-08-20",
    ]
    later = [r for r in feature_rows(sample_dir, "user_orders") if r[1] > t("2020-07-17")]
    assert later == [
        ("x", t("2020-07-19"), 1, 2, 2),
        ("x", t("2020-07-20"), 0, 2, 2),
        ("x", t("2020-07-23"), 0, 1, 2),
        ("x", t("2020-07-24"), 0, 0, 2),
        ("x", t("2020-08-15"), 0, 0, 1),
        ("x", t("2020-08-16"), 0, 0, 0),
    ]
    store = resources_for(sample_dir)["online_store"]
    with store.open() as online:  # type: ignore[attr-defined]
        features = online.get_features("user", ["x"], [ONLINE_TABLES["user_orders"]])["x"]
    assert features["cpf_orders__count_over_30_days_rolling_windows"] == 0
    assert features["user_orders__timestamp"] == dt.datetime(2020, 8, 16, tzinfo=dt.UTC)
    # the next tick has nothing left to do
    assert isinstance(_tick(sample_dir, "2020-08-20 00:05:00"), dg.SkipReason)
    # the raw tables, the feature sets with their online mirrors, the training set: "Launched
    # by" names the schedule on each
    inner = instance.get_runs(
        dg.RunsFilter(tags={attribution.LAUNCHED_IN_TAG: result.dagster_run.run_id})
    )
    assert len(inner) == 3
    assert all(run.tags["dagster/schedule_name"] == "daily_schedule" for run in inner)


def _settled(path: Path) -> None:
    old = time.time() - 10 * SETTLE_SECONDS
    os.utime(path, (old, old))


def _sense(data_dir: Path, instance: dg.DagsterInstance, cursor: str | None):
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"data_dir": DataDir(path=str(data_dir))},
        repository_def=defs.get_repository_def(),
    )
    return landing_sensor().evaluate_tick(context)


def test_the_sensor_launches_one_update_per_landing_change(sample_dir) -> None:
    assert landing_sensor().default_status == dg.DefaultSensorStatus.RUNNING
    assert landing_sensor().job_name == UPDATE
    instance = dg.DagsterInstance.ephemeral()
    landing = sample_dir / "order_events"
    _settled(landing / "input.csv")
    first = _sense(sample_dir, instance, None)
    assert len(first.run_requests or []) == 1
    assert first.cursor
    # handled once: the same landing launches nothing
    again = _sense(sample_dir, instance, first.cursor)
    assert not again.run_requests
    assert again.skip_message == "the landing has not changed since the last update"
    # a file still being written waits for the next tick, cursor unchanged
    drop = landing / "later-2020-07-18.csv"
    drop.write_text(HEADER + "j,2020-07-17 09:00:00,w,\n")
    writing = _sense(sample_dir, instance, first.cursor)
    assert not writing.run_requests
    assert writing.cursor == first.cursor
    _settled(drop)
    changed = _sense(sample_dir, instance, first.cursor)
    assert len(changed.run_requests or []) == 1
    assert changed.run_requests[0].tags[REASON_TAG] == (  # type: ignore[index]
        "landing changed: 1 file(s) added (later-2020-07-18.csv)"
    )
    assert changed.cursor not in (None, first.cursor)
    # the run it requests, launched as the daemon launches it, updates exactly the changed days
    built = definitions(resources_for(sample_dir))
    result = attribution.execute(
        built.resolve_job_def(UPDATE),
        instance,
        # the day the update runs: the store is brought through it
        tags={
            **changed.run_requests[0].tags,  # type: ignore[index]
            "dagster/sensor_name": "landing_sensor",
            TODAY_TAG: "2020-07-19",
        },
        run_config=QUIET,
    )
    assert result.success
    lines = report_lines(result.all_events)
    assert lines[1:] == [
        # through the update's day: the days nothing landed for are stored empty
        "order_events: ingested 3 days: 2020-07-17..2020-07-19",
        "chargeback_events: ingested 2 days: 2020-07-18..2020-07-19",
        "user_orders: recomputed 2 days: 2020-07-18..2020-07-19",
        # w's first state, and x's as its window slides past h
        "user_orders_online: 2 states written, 0 keys reconciled (0 back to an earlier state, "
        "0 removed)",
        "user_chargebacks: recomputed 2 days: 2020-07-18..2020-07-19",
        "user_chargebacks_online: 1 states written, 0 keys reconciled (0 back to an earlier "
        "state, 0 removed)",
        "awesome_dataset: rebuilt, 10 rows",
        # the raw tables' ranges differ: one run each
        f"4 run(s) tagged legiti/update={lines[0].split()[1][:-1]}",
    ], lines
    assert ("w", t("2020-07-18"), 1, 1, 1) in feature_rows(sample_dir, "user_orders")
    _attributed_to_the_sensor(instance, result.dagster_run, built)
    # a removed file is a change too
    drop.unlink()
    removed = _sense(sample_dir, instance, changed.cursor).run_requests or []
    assert [r.tags[REASON_TAG] for r in removed] == [
        "landing changed: 1 file(s) removed (later-2020-07-18.csv)"
    ]


def _attributed_to_the_sensor(
    instance: dg.DagsterInstance, update: dg.DagsterRun, built: dg.Definitions
) -> None:
    """The update's run and the runs it executed are the code location's, launched by the
    sensor; the update's run holds the summary and logged its plan before its runs started."""
    location = "__repository__@legiti_assets.definitions"  # workspace.yaml's code location
    assert update.tags["legiti/ingested/order_events"] == "3 days: 2020-07-17..2020-07-19"
    assert update.tags["legiti/recomputed/user_orders"] == "2 days: 2020-07-18..2020-07-19"
    assert update.tags["legiti/through"] == "2020-07-19"
    inner = instance.get_runs(dg.RunsFilter(tags={attribution.LAUNCHED_IN_TAG: update.run_id}))
    assert sorted(run.job_name for run in inner) == [
        COMPUTE_FEATURES,
        COMPUTE_FEATURES,
        "ingest_events",
        "ingest_events",
    ]
    # the job page lists a job's runs by this tag
    listed = instance.get_runs(dg.RunsFilter(tags={".dagster/repository": location}))
    assert {run.run_id for run in listed} == {update.run_id, *(run.run_id for run in inner)}
    for run in [update, *inner]:
        assert run.tags["dagster/sensor_name"] == "landing_sensor"  # "Launched by"
        assert run.remote_job_origin is not None
        assert run.remote_job_origin.job_name == run.job_name
        # re-executing finds the job at the version the run ran
        job = built.resolve_job_def(run.job_name)
        lineage = instance.get_job_snapshot(str(run.job_snapshot_id)).lineage_snapshot
        ran = lineage.parent_snapshot_id if lineage else run.job_snapshot_id
        assert ran == job.get_job_snapshot_id(), run.job_name
    messages = [(entry.timestamp, entry.user_message) for entry in instance.all_logs(update.run_id)]
    planned = next(when for when, message in messages if message.startswith("planned 4 run(s)"))
    records = instance.get_run_records(
        dg.RunsFilter(tags={attribution.LAUNCHED_IN_TAG: update.run_id})
    )
    assert planned < min(record.start_time or 0 for record in records)


def test_the_sensor_waits_while_an_update_runs(sample_dir) -> None:
    instance = dg.DagsterInstance.ephemeral()
    _settled(sample_dir / "order_events" / "input.csv")
    running = instance.create_run_for_job(
        defs.resolve_job_def(UPDATE), status=dg.DagsterRunStatus.STARTED
    )
    waiting = _sense(sample_dir, instance, None)
    assert not waiting.run_requests
    assert waiting.cursor is None
    assert waiting.skip_message == f"update run {running.run_id} is in progress"
    instance.report_run_failed(running)
    assert len(_sense(sample_dir, instance, None).run_requests or []) == 1


def test_an_update_runs_through_its_tagged_day_or_the_utc_date() -> None:
    job = defs.resolve_job_def(UPDATE)
    tagged = dg.DagsterRun(job_name=job.name, tags={TODAY_TAG: "2020-07-19"})
    assert update_day(tagged) == dt.date(2020, 7, 19)
    before = dt.datetime.now(dt.UTC).date()
    untagged = update_day(dg.DagsterRun(job_name=job.name))
    assert before <= untagged <= dt.datetime.now(dt.UTC).date()
    with pytest.raises(dg.Failure, match="legiti/today='2020-13-01' is not a YYYY-MM-DD day"):
        update_day(dg.DagsterRun(job_name=job.name, tags={TODAY_TAG: "2020-13-01"}))
