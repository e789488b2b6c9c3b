"""What keeps the store current without a click; both run by default under `make dev`.

- The landing sensor: when the landing's files change (added, rewritten or removed, and
  settled), one run of the `update` job: it plans from the landing, through the day it runs,
  and runs the plan (`legiti_assets.update`). Its request says which files changed.
- `daily_schedule`: after 00:00 UTC, one run of the same `update` job, through the new day D:
  the states of day D count the events of D - window .. D - 1, so they change every day even
  when no event arrives, as windows slide; D's raw day is stored (empty until files land for
  it, when the sensor's update ingests it again); days missed since the last one stored, or
  gone stale, come with it. It plans from the stored records first (no Spark) and launches
  nothing when the store is already through D and current.
"""

import datetime as dt
import hashlib
import json
import time
import warnings

import dagster as dg

from legiti_assets import executor, observe, planner
from legiti_assets.landing import landing_files
from legiti_assets.resources import DataDir
from legiti_assets.update import TODAY_TAG, UPDATE, update_job

# A file modified this recently may still be being written: wait for the next tick.
SETTLE_SECONDS = 5.0
# The daily run starts a few minutes after midnight UTC, once the day's last files are in.
DAILY_CRON = "5 0 * * *"
LANDING_TAG = "legiti/landing"
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


def landing_state(data_dir: DataDir) -> tuple[dict[str, str], float]:
    """What identifies each landing file as it is now (its size and modification time), and
    the newest modification time, without reading the files."""
    files, newest = {}, 0.0
    for path in landing_files(data_dir.landing_dir):
        stat = path.stat()
        files[path.name] = f"{stat.st_size}:{stat.st_mtime_ns}"
        newest = max(newest, stat.st_mtime)
    return files, newest


def landing_change(before: str | None, now: dict[str, str]) -> str:
    """Which files changed since the state `before` (a cursor of `landing_sensor`)."""
    try:
        old = json.loads(before) if before else {}
    except ValueError:
        old = {}
    if not isinstance(old, dict):
        old = {}
    parts = []
    for verb, names in (
        ("added", [n for n in now if n not in old]),
        ("rewritten", [n for n in now if n in old and old[n] != now[n]]),
        ("removed", [n for n in old if n not in now]),
    ):
        if names:
            shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
            parts.append(f"{len(names)} file(s) {verb} ({shown})")
    return "landing changed: " + "; ".join(parts) if parts else "landing changed"


def landing_sensor(interval_seconds: int = 30) -> dg.SensorDefinition:
    """The sensor, looking at the landing every `interval_seconds`."""

    @dg.sensor(
        name="landing_sensor",
        job=update_job,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Launches the update when the landing changes: one run, the changed days.",
    )
    def _sensor(context: dg.SensorEvaluationContext, data_dir: DataDir):
        files, newest = landing_state(data_dir)
        state = json.dumps(files, sort_keys=True)
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
        change = landing_change(context.cursor, files)
        context.update_cursor(state)
        return dg.RunRequest(
            tags={
                LANDING_TAG: hashlib.sha256(state.encode()).hexdigest()[:16],
                executor.REASON_TAG: change,
            }
        )

    return _sensor


def _behind(stored: planner.Stored, raw_tables: tuple[str, ...], day: dt.date) -> list[str]:
    """The raw tables not stored through `day`."""
    return [n for n in raw_tables if max(stored.raw.get(n, {}), default=dt.date.min) < day]


@dg.schedule(
    job=update_job,
    cron_schedule=DAILY_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="After midnight UTC: the update through the new day (its raw day, the feature "
    "sets' states as windows slide, mirrored online, the training sets), and any day missed "
    "since the last stored, or gone stale.",
)
def daily_schedule(context: dg.ScheduleEvaluationContext, data_dir: DataDir):
    day = context.scheduled_execution_time.astimezone(dt.UTC).date()
    declared, stored = observe.declarations(), observe.stored(data_dir)
    if not any(stored.raw.values()):
        return dg.SkipReason("nothing is stored yet: the landing sensor's first update builds it")
    plan = planner.plan(declared, stored, today=day)
    behind = _behind(stored, declared.raw_tables, day)
    if not plan and not behind:
        return dg.SkipReason(f"every output is stored through {day} already, and current")
    reasons = [f"{name}: not stored through {day}" for name in behind]
    reasons += [reason for step in plan.steps for reason in step.reasons]
    # keyed by the day: a tick evaluated again launches nothing more
    return dg.RunRequest(
        run_key=str(day),
        tags={TODAY_TAG: str(day), executor.REASON_TAG: f"the new day {day}: {'; '.join(reasons)}"},
    )
