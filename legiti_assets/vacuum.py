"""`make vacuum` and the daily `vacuum_schedule`: remove the data files that no version of a
table within its retention period uses (Delta's default: 7 days).

Writes never delete a file: a replaced day's old files stay, unreferenced, so a reader still on
a recent snapshot (a long training-set read, an `as_of` retrieval) never fails. Only VACUUM
removes them, once they are older than the retention period; time travel reaches back that far.
It runs through `deltalake` (delta-rs): no Spark session is needed.
"""

import argparse
from pathlib import Path

import dagster as dg
from deltalake import DeltaTable

from legiti_assets import layout, storage
from legiti_assets.assets.raw import DATED_BY
from legiti_assets.catalog import SPECS, TRAINING
from legiti_assets.resources import DataDir

VACUUM_CRON = "30 3 * * *"  # daily, away from the features' run after midnight


def tables(data: DataDir) -> list[Path]:
    """Every table the platform writes."""
    relative = [layout.raw_table(name) for name in DATED_BY]
    relative += [layout.feature_set_table(s.entity, s.name) for s in SPECS.values()]
    relative += [layout.dataset_table(name) for name in TRAINING]
    return [data.resolve(p) for p in relative]


def vacuum(data: DataDir, retention_hours: int | None = None) -> dict[Path, int]:
    """VACUUM every Delta table; the number of files each lost. `retention_hours=None`: each
    table's own retention (Delta's default, 7 days); a shorter one is refused by Delta."""
    removed = {}
    for table in tables(data):
        if storage.is_delta(table):
            files = DeltaTable(str(table)).vacuum(retention_hours=retention_hours, dry_run=False)
            removed[table] = len(files)
    return removed


@dg.op(description="VACUUM every table: files unused by any version within the retention.")
def vacuum_tables(context: dg.OpExecutionContext, data_dir: DataDir) -> None:
    for table, files in vacuum(data_dir).items():
        context.log.info(f"{table}: {files} file(s) removed")


@dg.job(name="vacuum", description="Remove the files no version within the retention uses.")
def vacuum_job() -> None:
    vacuum_tables()


vacuum_schedule = dg.ScheduleDefinition(
    job=vacuum_job,
    cron_schedule=VACUUM_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily: VACUUM every table past its retention period (Delta's default, 7 days).",
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", help="data directory; $LEGITI_DATA_DIR, else data")
    args = parser.parse_args(argv)
    for table, files in vacuum(DataDir(path=args.data_dir)).items():
        print(f"{table}: {files} file(s) removed")


if __name__ == "__main__":
    main()
