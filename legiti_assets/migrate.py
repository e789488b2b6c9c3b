"""`make migrate`: convert daily tables stored a directory per day (the layout before month
files) to a directory per month, once after upgrading.

Each table is converted under its writer lock, in a staging directory, then swapped in whole
with one atomic exchange: a reader sees the old table or the new one, and a conversion that
dies leaves the old one. Its manifest is kept, with each day's row count added. Days stored
under columns other than the newest day's (a declaration changed since) get the newest day's
columns, present ones cast and missing ones null; the manifest still records the declaration
they were computed under (or `unknown` where it recorded none), so reading them still says to
backfill.
"""

import argparse
import dataclasses
import datetime as dt
import functools
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession

from legiti_assets import changes, layout, storage
from legiti_assets.assets.raw import DATED_BY
from legiti_assets.catalog import SPECS
from legiti_assets.engine import TIMESTAMP
from legiti_assets.io_managers import UNKNOWN, conformed, write_months
from legiti_assets.resources import DataDir, SparkResource


def daily_tables(data: DataDir) -> Iterator[tuple[str, Path, str]]:
    """(writer lock name, path, dating column) of every daily table."""
    for asset, dated_by in DATED_BY.items():
        yield asset, data.resolve(layout.raw_table(asset)), dated_by
    for spec in SPECS.values():
        yield spec.name, data.resolve(layout.feature_set_table(spec.entity, spec.name)), TIMESTAMP


def _day_of(file: Path) -> dt.date:
    year, month, day = (int(p.name.split("=", 1)[1]) for p in file.parents[2::-1])
    return dt.date(year, month, day)


def _columns(file: Path) -> tuple[tuple[str, str], ...]:
    return tuple((f.name, str(f.type)) for f in pq.read_schema(file))


def convert(spark: SparkSession, root: Path, name: str, table: Path, dated_by: str) -> None:
    """Rewrite one table's day directories as month directories, atomically."""
    with storage.writer_lock(root, name):
        if any(table.glob("year=*/month=*/*.parquet")):
            raise storage.LayoutError(
                f"{name}: {table} holds both day directories and month files; a process of "
                "the code before month files wrote to it after it was converted. Stop it, "
                "then rebuild the table (dagster asset materialize --partition-range)"
            )
        files = sorted(table.glob("year=*/month=*/day=*/*.parquet"), key=_day_of)
        columns = {file: _columns(file) for file in files}
        groups: dict[tuple[tuple[str, str], ...], list[str]] = {}
        for file in files:
            groups.setdefault(columns[file], []).append(storage.file_uri(file))
        newest = columns[files[-1]] if files else ()
        # conformed to the newest columns, days stored under others must still read as stale
        conformed_days = {_day_of(f) for f in files if columns[f] != newest}
        storage.clean_staging(root, name)
        staged = storage.staging_dir(root, name, "migrate")
        try:
            rows: dict[dt.date | None, int] = {}
            if files:
                # read without the day directories' partition columns
                frames = [spark.read.parquet(*uris) for uris in groups.values()]
                target = frames[list(groups).index(newest)].schema
                df = functools.reduce(
                    DataFrame.unionByName, (conformed(frame, target) for frame in frames)
                )
                rows = changes.profile(df, dated_by).rows
                write_months(df, dated_by, staged)
            known = storage.recorded(table)
            storage.record_days(
                staged,
                {
                    day: dataclasses.replace(
                        record,
                        rows=rows.get(day, 0),
                        version=record.version or (UNKNOWN if day in conformed_days else None),
                    )
                    for day in set(known) | set(rows)
                    for record in [known.get(day, storage.DayRecord())]
                },
            )
            storage.exchange(staged, table)  # `staged` now holds the old table
        finally:
            storage.clean_staging(root, name)


def migrate(spark: SparkSession, data: DataDir) -> list[Path]:
    """Convert every daily table that has day directories; the tables converted."""
    converted = []
    for name, table, dated_by in daily_tables(data):
        if storage.has_day_directories(table):
            convert(spark, data.root, name, table, dated_by)
            converted.append(table)
    return converted


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", help="data directory; $LEGITI_DATA_DIR, else data")
    args = parser.parse_args(argv)
    data = DataDir(path=args.data_dir)
    if not any(storage.has_day_directories(table) for _, table, _ in daily_tables(data)):
        print(f"nothing to convert under {data.root}")  # without starting Spark
        return
    for table in migrate(SparkResource().spark_session, data):
        print(f"converted {table} to month files")


if __name__ == "__main__":
    main()
