"""`make migrate`: convert a data directory written before Delta Lake to Delta tables, in
place, once after upgrading.

A daily table stored as month files (`year=YYYY/month=M/`, one Parquet file each) or as the
older day directories (`year=/month=/day=`), with a `_materialized_days.json` manifest of its
days, becomes a Delta table at the same path: its rows are written again as one commit (new
files at the table root, the log in `_delta_log`) whose records are the manifest's, each day's
row count taken from the data. Only after that commit are the `year=*` directories and the
manifest removed: before it, the old layout is whole; after it, Delta readers follow the log
and never see the old files, so a run that dies between the two is harmless, and running this
again just removes them.

Delta's own `CONVERT TO DELTA` would keep the files without rewriting them, but it makes the
Hive directories' `year` and `month` partition columns of the table, which no declaration has
and every later write would have to fill; so the rows are rewritten instead.

Days stored under other columns than the newest day's (a declaration changed since) get the
newest day's columns, present ones cast and missing ones null; their records keep the
declaration version they were computed under, or say `unknown` where there was none, so reading
them still says to backfill.

A training set (`datasets/<name>/`: part files and `_inputs_fingerprint`) becomes a Delta table
too. If its fingerprint matches its inputs' manifests (taken before any input is converted),
its commit says it was built from the converted inputs, so `make update` leaves it; otherwise
the next update rebuilds it. Its old files share the root with Delta's, so they are listed in
`_migrating.json` before anything is converted, and exactly those are removed after its commit.
"""

import argparse
import dataclasses
import datetime as dt
import functools
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import dagster as dg
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession

from legiti_assets import changes, layout, storage
from legiti_assets.assets.datasets import training_set_inputs
from legiti_assets.assets.raw import DATED_BY, EVENT_SCHEMA
from legiti_assets.catalog import SPECS, TRAINING
from legiti_assets.engine import TIMESTAMP
from legiti_assets.io_managers import BUILT_FROM, INPUTS, UNKNOWN, conformed
from legiti_assets.locations import is_local, uri
from legiti_assets.resources import DataDir, SparkResource
from legiti_assets.schemas import spark_ddl, state_schema

MANIFEST = "_materialized_days.json"  # a daily table's days, before Delta
INPUTS_FILE = "_inputs_fingerprint"  # a training set's inputs, before Delta
PENDING = "_migrating.json"  # a training set's old files and verdict, until they are removed
MIGRATED = "migrated"  # a fact of the commits this makes

CONVERTED = "converted to Delta"
CLEANED = "removed the files left from before Delta (it was converted already)"
STALE = f"{CONVERTED}; its inputs changed since it was built: the next update rebuilds it"


class DailyTable(NamedTuple):
    name: str
    path: Path
    dated_by: str
    schema: dg.TableSchema  # for a table whose manifest records days but no file holds rows
    # whether its days record their row counts: a feature set's writes do not (`write_days`)
    counts_rows: bool


def daily_tables(data: DataDir) -> Iterator[DailyTable]:
    for asset, dated_by in DATED_BY.items():
        yield DailyTable(
            asset, data.resolve(layout.raw_table(asset)), dated_by, EVENT_SCHEMA, counts_rows=True
        )
    for spec in SPECS.values():
        path = data.resolve(layout.feature_set_table(spec.entity, spec.name))
        yield DailyTable(spec.name, path, TIMESTAMP, state_schema(spec), counts_rows=False)


def training_sets(data: DataDir) -> Iterator[tuple[Path, list[str]]]:
    """Each training set's path, with its input tables' paths under the data directory."""
    for name, (training_set, specs) in TRAINING.items():
        yield data.resolve(layout.dataset_table(name)), training_set_inputs(training_set, specs)


def _committed(table: Path) -> bool:
    # not `storage.is_delta`: a first write that dies before its commit leaves a bare log dir
    return any((table / storage.LOG_DIR).glob("*.json"))


def _old_paths(table: Path) -> list[Path]:
    """What a daily table holds from before Delta: Hive directories, the manifest and the
    temporary copies of it a writer that died left."""
    return sorted(table.glob("year=*")) + sorted(table.glob(f"*{MANIFEST}*"))


def _is_old_training_set(table: Path) -> bool:
    return (
        table.is_dir()
        and not _committed(table)
        and any(p.name != storage.LOG_DIR for p in table.iterdir())
    )


def pending(data: DataDir) -> bool:
    """Whether anything is left to convert or remove (without Spark)."""
    if not is_local(data.root):  # the code before Delta swapped local directories only
        return False
    return any(_old_paths(t.path) for t in daily_tables(data)) or any(
        _is_old_training_set(table) or (table / PENDING).exists()
        for table, _ in training_sets(data)
    )


def old_records(table: Path) -> dict[dt.date, storage.DayRecord]:
    """The manifest's days: a list of days (before versions were recorded), a map of each day
    to its version (before fingerprints), or to its record."""
    path = table / MANIFEST
    if not path.exists():
        return {}
    stored = json.loads(path.read_text())
    if isinstance(stored, list):
        return {dt.date.fromisoformat(d): storage.DayRecord() for d in stored}
    return {
        dt.date.fromisoformat(d): storage.DayRecord(**v)
        if isinstance(v, dict)
        else storage.DayRecord(version=v)
        for d, v in stored.items()
    }


def old_fingerprint(tables: Iterable[Path]) -> str:
    """What a training set recorded of its inputs before Delta: a hash of their manifests."""
    digest = hashlib.sha256()
    for table in tables:
        manifest = table / MANIFEST
        digest.update(manifest.read_bytes() if manifest.exists() else b"-")
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _dirs_key(file: Path, table: Path) -> tuple[int, ...]:
    """(year, month) of a month file, (year, month, day) of a day directory's file."""
    return tuple(int(part.split("=", 1)[1]) for part in file.relative_to(table).parts[:-1])


def _columns(file: Path) -> tuple[tuple[str, str], ...]:
    return tuple((f.name, str(f.type)) for f in pq.read_schema(file))


def _convert_days(spark: SparkSession, table: DailyTable) -> None:
    """Commit a daily table's old files' rows, with its manifest's records, as a Delta table."""
    path = table.path
    months = sorted(path.glob("year=*/month=*/*.parquet"))
    days = sorted(path.glob("year=*/month=*/day=*/*.parquet"))
    if months and days:
        # the same day may be in both: the code before month files wrote to it after
        raise storage.LayoutError(
            f"{table.name}: {path} holds both day directories and month files; rebuild it "
            "(dagster asset materialize --partition-range) after removing its directory"
        )
    files = sorted(months or days, key=lambda f: _dirs_key(f, path))
    columns = {file: _columns(file) for file in files}
    groups: dict[tuple[tuple[str, str], ...], list[str]] = {}
    for file in files:
        groups.setdefault(columns[file], []).append(uri(file))
    newest = columns[files[-1]] if files else ()
    if files:
        # file paths, not directories: Spark adds no year/month/day partition columns
        frames = {cols: spark.read.parquet(*uris) for cols, uris in groups.items()}
        target = frames[newest].schema
        df = functools.reduce(
            DataFrame.unionByName, (conformed(frame, target) for frame in frames.values())
        )
    else:
        df = spark.createDataFrame([], spark_ddl(table.schema))
    # months or days whose rows were conformed: their days must still read as stale
    older = {_dirs_key(f, path) for f in files if columns[f] != newest}
    rows = changes.profile(df, table.dated_by).rows
    known = old_records(path)
    records = {}
    for day in sorted(set(known) | {d for d in rows if d is not None}):
        record = known.get(day, storage.DayRecord())
        was_conformed = any((day.year, day.month, day.day)[: len(k)] == k for k in older)
        records[day] = dataclasses.replace(
            record,
            rows=rows.get(day, 0) if table.counts_rows else None,
            version=record.version or (UNKNOWN if was_conformed else None),
        )
    written = sorted(records)
    storage.write(
        storage.clustered(df, table.dated_by, written) if written else df,
        table.path,
        days=records,
        facts={MIGRATED: True},
        based_on=None,
    )


def _write_json(path: Path, value: object) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(value))
    os.replace(temporary, path)  # a run that dies leaves the old list or the new one


def _plan_training_set(table: Path, inputs: list[Path]) -> None:
    """List a training set's old files, and whether its fingerprint still matches its inputs'
    manifests (asked before they are converted, which removes them)."""
    files = sorted(p.name for p in table.iterdir() if p.name != storage.LOG_DIR)
    recorded = table / INPUTS_FILE
    current = recorded.is_file() and recorded.read_text() == old_fingerprint(inputs)
    _write_json(table / PENDING, {"files": files, "current": current})


def _migrated_versions(data: DataDir, inputs: list[str]) -> dict[str, int] | None:
    """Each input's version as converted; None if one was written since (or not converted):
    then the training set is no longer what it was built from."""
    versions = {}
    for relative in inputs:
        commit = storage.latest_commit(data.resolve(relative))
        if commit is None or not commit.facts.get(MIGRATED):
            return None
        versions[relative] = commit.version
    return versions


def _convert_training_set(
    spark: SparkSession, data: DataDir, table: Path, inputs: list[str], plan: dict[str, Any]
) -> bool:
    """Commit a training set's old part files as a Delta table; whether it is still current."""
    parts = [uri(table / f) for f in plan["files"] if f.endswith(".parquet")]
    versions = _migrated_versions(data, inputs) if plan["current"] else None
    facts: dict[str, object] = {MIGRATED: True}
    if versions is not None:
        # what the IO manager records of a build, so that an update finds it current
        facts[INPUTS] = changes.tables_fingerprint(
            {data.resolve(t): v for t, v in versions.items()}
        )
        facts[BUILT_FROM] = versions
    if parts:  # else there is nothing to keep: the next update builds it
        storage.write(spark.read.parquet(*parts), table, days={}, facts=facts, based_on=None)
    return bool(parts) and versions is not None


def _remove(paths: Iterable[Path]) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def migrate(spark: SparkResource, data: DataDir) -> dict[Path, str]:
    """Convert every table written before Delta, and remove what a conversion that died left;
    what was done to each table (Spark starts only if a table needs converting)."""
    done: dict[Path, str] = {}
    if not pending(data):
        return done
    sets = list(training_sets(data))
    for table, inputs in sets:
        if _is_old_training_set(table) and not (table / PENDING).exists():
            _plan_training_set(table, [data.resolve(t) for t in inputs])
    for daily in daily_tables(data):
        old = _old_paths(daily.path)
        if not old:
            continue
        if _committed(daily.path):
            done[daily.path] = CLEANED
        else:
            _convert_days(spark.spark_session, daily)
            done[daily.path] = CONVERTED
        _remove(old)  # only after the commit: until then they are the table
    for table, inputs in sets:
        if not (table / PENDING).exists():
            continue
        plan = json.loads((table / PENDING).read_text())
        if _committed(table):
            done[table] = CLEANED
        else:
            current = _convert_training_set(spark.spark_session, data, table, inputs, plan)
            done[table] = CONVERTED if current else STALE
        _remove(table / f for f in plan["files"])
        (table / PENDING).unlink()  # last: a run that dies before removes the files again
    # the locks and trash of the layouts before Delta, which nothing uses any more
    shutil.rmtree(data.root / ".staging", ignore_errors=True)
    return done


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", help="data directory; $LEGITI_DATA_DIR, else data")
    args = parser.parse_args(argv)
    data = DataDir(path=args.data_dir)
    if not pending(data):
        print(f"nothing to convert under {data.root}")  # without starting Spark
        return
    for table, what in migrate(SparkResource(), data).items():
        print(f"{table}: {what}")


if __name__ == "__main__":
    main()
