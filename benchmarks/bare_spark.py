"""The main job's computation as one bare PySpark script: what `make bench` times ours against.

    python -m benchmarks.bare_spark --data-dir D --start S --end E --out O   # every output
    python -m benchmarks.bare_spark --data-dir D --day E --out O             # one day's states

What it does, in one process and one SparkSession (local[*], with the settings of
`legiti_assets.resources.SparkResource.session_config`: shuffle partitions, driver memory, the
UTC session time zone, loopback driver, Delta Lake's jars, SQL extension, catalog and log
settings; not its two start-up and I/O shortcuts, the JVM class-data archive and the fork-free
local file system, so it starts a plain JVM as any PySpark script would):

- reads every `D/order_events/*.csv` as one table, a later file's record of an order replacing
  an earlier one and identical lines counting once (the landing's rules), timestamps parsed as
  UTC; order events are the orders dated up to E, chargeback events those with a chargeback
  dated up to E (the raw tables the main job ingests);
- computes every feature set of the registry (`legiti_assets.catalog.SPECS`) over S..E in one
  pass with our engine (`legiti_assets.engine.compute_states`), or, with `--day`, that day's
  states alone;
- computes every training set (`legiti_assets.catalog.TRAINING`) with our point-in-time join
  (`legiti_assets.pit_join.point_in_time_join`), keeping the spine rows on days every feature
  set covers (`pit_join.last_covered_day`, as the asset does), so its rows are ours;
- writes each table as a Delta Lake table, `O/<name>`, in one overwrite commit: the format
  our tables are stored in (`legiti_assets.storage`), so writing them costs the same.

What it does not do: validate the landing (it assumes a valid one), store the raw events,
replace single days (`replaceWhere`), record days, fingerprints or versions in its commits,
guard against concurrent writers, run checks, fill the online store, or use Dagster (no runs,
no event log, no IO manager). `pit_join` and `SparkResource` import Dagster, so this process
pays that import, not more. `make bench` runs it as a whole process beside ours and compares
its tables with ours row for row (`bench.check_bare`, both read through their Delta logs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from benchmarks import measure
from legiti_assets.catalog import SPECS, TRAINING
from legiti_assets.engine import TIMESTAMP, compute_states
from legiti_assets.pit_join import last_covered_day, point_in_time_join
from legiti_assets.resources import SparkResource

COLUMNS = ("order_id", "order_timestamp", "cpf", "chargeback_timestamp")
TS_FORMAT = "yyyy-MM-dd HH:mm:ss"
# Each raw event table the feature sets and training sets read, with the column dating its rows
# (legiti_assets.assets.raw.DATED_BY): a row without that timestamp is not in the table.
DATED_BY = {"order_events": "order_timestamp", "chargeback_events": "chargeback_timestamp"}


def session(shuffle_partitions: int, driver_memory: str) -> SparkSession:
    # the platform's own settings, so Delta is configured exactly as our runs configure it
    config = SparkResource(
        master="local[*]",
        app_name="bare-spark",
        shuffle_partitions=shuffle_partitions,
        driver_memory=driver_memory,
        fork_free_local_fs=False,
        s3a=False,
        class_data_sharing=False,
    ).session_config()
    # as SparkResource starts it: the driver is on loopback, say so before the JVM starts
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder
    for key, value in config.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def read_events(spark: SparkSession, landing: Path) -> DataFrame:
    """One row per order: each file's distinct records, the last file's record of an order."""
    files = sorted(p for p in landing.glob("*.csv") if p.is_file())
    if not files:
        raise SystemExit(f"no *.csv file in {landing}")
    ranked = None
    for rank, path in enumerate(files):
        rows = spark.read.csv(str(path), header=True).select(*COLUMNS).dropDuplicates()
        rows = rows.withColumn("_file", F.lit(rank))
        ranked = rows if ranked is None else ranked.unionByName(rows)
    assert ranked is not None
    if len(files) > 1:
        latest = Window.partitionBy("order_id").orderBy(F.col("_file").desc())
        ranked = ranked.withColumn("_rank", F.row_number().over(latest)).where("_rank = 1")
    return ranked.select(
        "order_id",
        F.to_timestamp("order_timestamp", TS_FORMAT).alias("order_timestamp"),
        "cpf",
        F.to_timestamp("chargeback_timestamp", TS_FORMAT).alias("chargeback_timestamp"),
    )


def sources(events: DataFrame, end: dt.date) -> dict[str, DataFrame]:
    """The raw event tables as the main job stores them for a run ending on `end`."""
    return {n: events.where(F.to_date(c) <= F.lit(end)) for n, c in DATED_BY.items()}


def write(df: DataFrame, path: Path) -> None:
    df.write.format("delta").mode("overwrite").save(str(path))


def one_day(events: DataFrame, out: Path, day: dt.date) -> None:
    """Every feature set's rows of `day` (its states that differ from the day before)."""
    tables = sources(events, day)
    for name, spec in SPECS.items():
        write(compute_states(tables[spec.source], spec, day, day), out / name)


def whole_range(events: DataFrame, out: Path, start: dt.date, end: dt.date) -> None:
    """Every feature set over start..end, then every training set from the states written."""
    spark = events.sparkSession
    tables = sources(events, end)
    first = events.agg(
        *(
            F.min(F.when(F.to_date(c) <= F.lit(end), F.to_date(c))).alias(n)
            for n, c in DATED_BY.items()
        )
    ).first()
    assert first is not None
    states = {}
    for name, spec in SPECS.items():
        write(compute_states(tables[spec.source], spec, start, end), out / name)
        states[name] = spark.read.format("delta").load(str(out / name))
    written = {start + dt.timedelta(days=i) for i in range((end - start).days + 1)}
    for name, (training_set, specs) in TRAINING.items():
        covered = min(last_covered_day(written, first[s.source]) for s in specs)
        time_column, label = training_set.timestamp, training_set.label
        spine = tables[training_set.spine]
        joined = point_in_time_join(
            spine.where(F.to_date(time_column) <= F.lit(covered)),
            [(s, states[s.name]) for s in specs],
            timestamp=time_column,
        )
        columns = []
        for column in spine.columns:  # the spine's, its time as `timestamp` then the label
            if column == time_column:
                columns += [F.col(column).alias(TIMESTAMP), F.col(label)]
            elif column != label:
                columns.append(F.col(column))
        features = [a.column for s in specs for a in s.aggregates]
        write(joined.select(*columns, *features), out / name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="holds order_events/*.csv")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--start", type=dt.date.fromisoformat)
    parser.add_argument("--end", type=dt.date.fromisoformat)
    parser.add_argument("--day", type=dt.date.fromisoformat, help="only this day's states")
    parser.add_argument("--shuffle-partitions", type=int, default=8)
    parser.add_argument("--driver-memory", default=SparkResource().driver_memory)
    args = parser.parse_args(argv)
    if args.day is None and (args.start is None or args.end is None):
        parser.error("give --start and --end, or --day")
    began = time.perf_counter()
    spark = session(args.shuffle_partitions, args.driver_memory)
    seconds = {"spark_start": time.perf_counter() - began}
    events = read_events(spark, args.data_dir / "order_events").cache()
    if args.day is not None:
        one_day(events, args.out, args.day)
    else:
        whole_range(events, args.out, args.start, args.end)
    seconds["compute"] = time.perf_counter() - began - seconds["spark_start"]
    spark.stop()
    measure.report(seconds)


if __name__ == "__main__":
    main()
