"""What keeps the store current without a click; both run by default under `make dev`.

- `landing_sensor`: when the landing's files change (added, rewritten or removed, and settled),
  one run of the `update` job: it ingests the changed days only and recomputes what they reach.
- `daily_schedule`: after 00:00 UTC, one run of the partitioned `compute_features` job over the new
  day (and any day since the last one stored): the states of day D count the events of
  D - window .. D - 1, so they change every day even when no event arrives, as windows slide.

Raw days are not the schedule's: a raw day is complete once its events have landed, which the
sensor sees; the schedule's day D reads the raw days the sensor ingested.
"""

import datetime as dt
import hashlib
import time
import warnings

import dagster as dg

from legiti_assets import changes, layout, storage
from legiti_assets.catalog import SPECS
from legiti_assets.jobs import UPDATE, compute_features_job, update_job
from legiti_assets.landing import landing_files
from legiti_assets.partitions import range_tags
from legiti_assets.resources import DataDir

# A file modified this recently may still be being written: wait for the next tick.
SETTLE_SECONDS = 5.0
# The daily run starts a few minutes after midnight UTC, once the day's last files are in.
DAILY_CRON = "5 0 * * *"
# Dagster warns of a beta parameter when it copies any sensor (passing `owners` itself), in every
# process that loads the definitions: not a choice of ours, and nothing a user can act on.
warnings.filterwarnings(
    "ignore",
    message="Parameter `owners` of initializer `SensorDefinition.__init__`",
    category=dg.BetaWarning,
)
IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def landing_state(data_dir: DataDir) -> tuple[str, float]:
    """What identifies the landing as it is now (each file's name, size and modification time)
    and the newest modification time, without reading the files."""
    digest = hashlib.sha256()
    newest = 0.0
    for path in landing_files(data_dir.landing_dir):
        stat = path.stat()
        digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        newest = max(newest, stat.st_mtime)
    return digest.hexdigest()[:16], newest


@dg.sensor(
    job=update_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches the update when the landing changes: one run, the changed days.",
)
def landing_sensor(context: dg.SensorEvaluationContext, data_dir: DataDir):
    state, newest = landing_state(data_dir)
    if state == context.cursor:
        return dg.SkipReason("the landing has not changed since the last update")
    if time.time() - newest < SETTLE_SECONDS:
        return dg.SkipReason("a landing file is being written: waiting for it to settle")
    running = context.instance.get_run_records(
        dg.RunsFilter(job_name=UPDATE, statuses=IN_PROGRESS), limit=1
    )
    if running:
        # its update may have read the landing before this change: the next tick launches one
        return dg.SkipReason(f"update run {running[0].dagster_run.run_id} is in progress")
    context.update_cursor(state)
    return dg.RunRequest(tags={"legiti/landing": state})


def days_to_extend(data_dir: DataDir, day: dt.date) -> list[dt.date]:
    """The feature-set days through `day` after the last one stored (over every feature set),
    so a missed day is caught up; none if nothing is stored yet (the first update builds it)."""
    last_days = [
        max(
            storage.recorded_days(data_dir.resolve(layout.feature_set_table(s.entity, s.name))),
            default=None,
        )
        for s in SPECS.values()
    ]
    if not last_days or None in last_days:
        return []
    first = min(d for d in last_days if d is not None) + dt.timedelta(days=1)
    return changes.day_range(first, day)


@dg.schedule(
    job=compute_features_job,
    cron_schedule=DAILY_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="After midnight UTC: the feature sets' states of the new day (and of any day "
    "missed since the last stored), mirrored online, and the training sets rebuilt.",
)
def daily_schedule(context: dg.ScheduleEvaluationContext, data_dir: DataDir):
    day = context.scheduled_execution_time.astimezone(dt.UTC).date()
    days = days_to_extend(data_dir, day)
    if not days:
        return dg.SkipReason(f"the feature sets are stored through {day} already, or not built yet")
    if len(days) == 1:
        return dg.RunRequest(run_key=str(day), partition_key=str(day))
    return dg.RunRequest(run_key=str(day), tags=range_tags(days[0], days[-1]))
