"""Readers of the latest snapshots, looping while `make update` rewrites the store: what they saw.

    python -m benchmarks.snapshot_readers --data-dir D [--spark]

`D` must hold a built store and a landing with changes to apply. Reader threads loop over every
table, each read the table's latest version as a user would: `deltalake` to pandas, DuckDB over
`deltalake`'s Arrow dataset, and, with `--spark`, Spark in this process. Meanwhile
`python -m legiti_assets.update` runs as a subprocess. A read is consistent when its rows per day
are exactly what the records of one committed version say (a version committed between the
read's start and end): a read mixing two versions, or failing, is counted as a failure. It
prints reads, failures and the versions seen per table and reader. No lock is taken.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pandas as pd

from legiti_assets import layout, storage
from legiti_assets.assets.raw import DATED_BY
from legiti_assets.catalog import SPECS, TRAINING
from legiti_assets.engine import TIMESTAMP
from legiti_assets.locations import uri
from legiti_assets.resources import DataDir

Counts = dict[dt.date, int]


def tables(data: DataDir) -> dict[Path, str | None]:
    """Every table with the column dating its rows (None: a training set)."""
    found: dict[Path, str | None] = {
        data.resolve(layout.raw_table(name)): by for name, by in DATED_BY.items()
    }
    for spec in SPECS.values():
        found[data.resolve(layout.feature_set_table(spec.entity, spec.name))] = TIMESTAMP
    for name in TRAINING:
        found[data.resolve(layout.dataset_table(name))] = None
    return found


def _by_day(days: pd.Series) -> Counts:
    counts = pd.to_datetime(days, utc=True).dt.date.value_counts()
    return {day: int(n) for day, n in counts.items()}


def read_pandas(table: Path, dated_by: str | None) -> Counts | int:
    df = storage.log(table).to_pandas()
    return len(df) if dated_by is None else _by_day(df[dated_by])


def read_duckdb(table: Path, dated_by: str | None) -> Counts | int:
    dataset = storage.log(table).to_pyarrow_dataset()
    with duckdb.connect() as con:
        con.register("t", dataset)
        if dated_by is None:
            return int(con.sql("select count(*) from t").fetchall()[0][0])
        rows = con.sql(
            f"select cast(timezone('UTC', \"{dated_by}\") as date), count(*) from t group by 1"
        ).fetchall()
    return {day: int(n) for day, n in rows}


def expected(table: Path, version: int, dated: bool) -> Counts | int:
    if not dated:
        return storage.committed_rows(table, version)
    return {d: r.rows for d, r in storage.recorded(table, version).items() if r.rows}


def loop(
    name: str,
    read: Callable[[Path, str | None], Counts | int],
    targets: dict[Path, str | None],
    stop: threading.Event,
    seen: dict[tuple[str, str], collections.Counter],
    failures: list[str],
) -> None:
    while not stop.is_set():
        for table, dated_by in targets.items():
            key = (name, table.name)
            try:
                first = storage.current_version(table)
                got = read(table, dated_by)
                last = storage.current_version(table)
            except Exception as error:  # a reader must never fail: count it and go on
                failures.append(f"{key}: {type(error).__name__}: {error}")
                seen[key]["failed"] += 1
                continue
            assert first is not None and last is not None
            match = [
                v for v in range(first, last + 1) if expected(table, v, dated_by is not None) == got
            ]
            if match:
                seen[key][f"v{match[0]}"] += 1
            else:
                failures.append(f"{key}: read between versions {first} and {last} matches none")
                seen[key]["failed"] += 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--spark", action="store_true", help="a Spark reader too")
    args = parser.parse_args(argv)
    data = DataDir(path=args.data_dir)
    targets = tables(data)
    readers: dict[str, Callable[[Path, str | None], Counts | int]] = {
        "pandas": read_pandas,
        "duckdb": read_duckdb,
    }
    if args.spark:
        from pyspark.sql import functions as F

        from legiti_assets.resources import SparkResource

        spark = SparkResource(master="local[1]").spark_session

        def read_spark(table: Path, dated_by: str | None) -> Counts | int:
            df = spark.read.format("delta").load(uri(table))
            if dated_by is None:
                return df.count()
            rows = df.groupBy(F.to_date(dated_by)).count().collect()
            return {r[0]: int(r[1]) for r in rows}

        readers["spark"] = read_spark
    stop = threading.Event()
    seen: dict[tuple[str, str], collections.Counter] = collections.defaultdict(collections.Counter)
    failures: list[str] = []
    threads = [
        threading.Thread(target=loop, args=(n, r, targets, stop, seen, failures), daemon=True)
        for n, r in readers.items()
    ]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    env = {**os.environ, "LEGITI_DATA_DIR": str(data.root)}
    update = subprocess.run([sys.executable, "-m", "legiti_assets.update"], env=env, check=False)
    stop.set()
    for thread in threads:
        thread.join()
    print(f"update exited {update.returncode} after {time.monotonic() - started:.1f} s")
    reads = sum(sum(c.values()) for c in seen.values())
    print(f"{reads} reads, {len(failures)} failures")
    for (reader, table), counts in sorted(seen.items()):
        versions = ", ".join(f"{k} x{n}" for k, n in sorted(counts.items()))
        print(f"  {reader:7} {table:20} {versions}")
    for failure in sorted(set(failures))[:10]:
        print(f"  FAILED {failure}")


if __name__ == "__main__":
    main()
