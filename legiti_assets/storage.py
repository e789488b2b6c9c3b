"""Tables as Delta Lake tables: Parquet data files plus a commit log that every reader follows.

A write is one commit. A daily table's write replaces exactly the days of its range
(`replaceWhere` on its timestamp column): files holding only other days are left alone, and a
day whose new result is empty is left with no rows. What is known of each day (`DayRecord`:
declaration version, fingerprints, rows where counted before the write) travels in the same
commit, as its `userMetadata`, so
the records and the rows they describe are never out of step, and time travel reads both as of
any version. A reader of any kind (Spark, `deltalake`, DuckDB or pandas through it) sees one
committed version; old files go only through `VACUUM`, past a retention period.

Two writers of one table at once are refused by Delta's own conflict detection: every write
declares the version it read its records from as an application transaction (`txnAppId`), so
a commit that lands meanwhile makes the later one fail instead of dropping the other's records.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError
from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from legiti_assets.locations import delta_path, uri
from legiti_assets.records import DayRecord

LOG_DIR = "_delta_log"
# What every commit of ours carries in its userMetadata, under this key.
RECORDS_KEY = "legiti"
# The application transaction every write declares (see the module's docstring).
APP_ID = "legiti-assets"


def is_delta(table: Path) -> bool:
    """Whether `table` is a Delta table with at least one commit."""
    return DeltaTable.is_deltatable(delta_path(table))


def log(table: Path, version: int | None = None) -> DeltaTable:
    """The table's log through `deltalake` (delta-rs), at `version` (default: the latest)."""
    return DeltaTable(delta_path(table), version=version)


class LayoutError(ValueError):
    """A table is not a Delta table (stored by a version before Delta Lake)."""


def check_layout(name: str, table: Path) -> None:
    """Raise, saying how to convert it, if `table` is stored in a layout before Delta Lake:
    Parquet files or month directories, and no Delta log (not even a first commit under way)."""
    if not table.is_dir() or (table / LOG_DIR).is_dir():
        return
    if any(table.glob("year=*")) or any(table.glob("*.parquet")) or any(table.glob("_*.json")):
        raise LayoutError(
            f"{name}: {table} is not a Delta table (it was written before the store moved to "
            "Delta Lake); convert every table once with `make migrate` "
            "(python -m legiti_assets.migrate)"
        )


class ConcurrentWriteError(RuntimeError):
    """Another writer committed to a table while this one was writing it."""


@dataclass(frozen=True)
class Commit:
    """What a commit of ours says of its table: each day's record (daily tables) and any other
    facts (an unpartitioned table's input fingerprint, the versions it was built from)."""

    version: int
    days: dict[dt.date, DayRecord]
    facts: dict[str, Any]


def _encode(days: Mapping[dt.date, DayRecord]) -> dict[str, dict[str, object]]:
    return {
        str(day): {k: v for k, v in vars(record).items() if v is not None}
        for day, record in sorted(days.items())
    }


def encode_records(days: Mapping[dt.date, DayRecord]) -> str:
    """The records as stable JSON (what a fingerprint of a table's records hashes)."""
    return json.dumps(_encode(days), sort_keys=True)


def _ours(commit: Mapping[str, Any]) -> dict[str, Any] | None:
    text = commit.get("userMetadata")
    if not text:
        return None
    try:
        found = json.loads(text)
    except ValueError:
        return None
    return found.get(RECORDS_KEY) if isinstance(found, dict) else None


def latest_commit(table: Path, as_of: int | None = None) -> Commit | None:
    """The newest commit of ours at or before version `as_of` (default: the latest), or None
    if the table has none (not a Delta table, or written by something else only)."""
    if not is_delta(table):
        return None
    try:
        commits = log(table)
    except TableNotFoundError:  # its first commit is being written
        return None
    latest = commits.version()
    newest = latest if as_of is None else min(as_of, latest)
    # our commits are nearly always the newest: read one first, then four times as many
    limit = latest - newest + 1
    while True:
        history = commits.history(limit)
        for commit in history:
            ours = _ours(commit)
            if commit.get("version", -1) <= newest and ours is not None:
                days = {dt.date.fromisoformat(d): DayRecord(**r) for d, r in ours["days"].items()}
                facts = {k: v for k, v in ours.items() if k != "days"}
                return Commit(int(commit["version"]), days, facts)
        if len(history) < limit:
            return None
        limit *= 4


def version_at(table: Path, when: dt.datetime) -> int | None:
    """The table's version as of instant `when` (naive: UTC), or None if it did not exist yet."""
    if not is_delta(table):
        return None
    moment = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    found = None
    for commit in log(table).history():
        committed = dt.datetime.fromtimestamp(commit["timestamp"] / 1000, tz=dt.UTC)
        if committed <= moment and (found is None or commit["version"] > found):
            found = int(commit["version"])
    return found


def recorded(table: Path, as_of: int | None = None) -> dict[dt.date, DayRecord]:
    """Every recorded day of a table with what is known of it, as of version `as_of`."""
    commit = latest_commit(table, as_of)
    return {} if commit is None else dict(commit.days)


def recorded_versions(table: Path) -> dict[dt.date, str | None]:
    """Each recorded day with the declaration version it was written under (None: unknown,
    or a table without versions)."""
    return {day: record.version for day, record in recorded(table).items()}


def recorded_days(table: Path) -> list[dt.date]:
    return sorted(recorded(table))


def stored_days(table: Path, as_of: int | None = None) -> list[dt.date]:
    """Every recorded day of a table that has rows, or whose rows were not counted (a feature
    set's, counted from the version written, after its commit), sorted."""
    check_layout(table.name, table)
    return sorted(
        day for day, record in recorded(table, as_of).items() if record.rows is None or record.rows
    )


def newest(table: Path, column: str) -> dt.datetime | None:
    """The greatest value of a timestamp `column` in the table's latest version (None: no
    rows), from the statistics of its files in the log: no data file is read."""
    if not is_delta(table):
        return None
    actions = log(table).get_add_actions(flatten=True)
    rows = actions.column("num_records").to_pylist()
    found = [
        value
        for value, n in zip(actions.column(f"max.{column}").to_pylist(), rows, strict=True)
        if n
    ]
    if None in found:
        raise ValueError(f"{table}: a file of the latest version has no statistics of {column}")
    return max(found, default=None)


def current_version(table: Path) -> int | None:
    """The table's latest version; None while it has no commit."""
    if not is_delta(table):
        return None
    try:
        return log(table).version()
    except TableNotFoundError:  # its first commit is being written
        return None


def read(spark: SparkSession, table: Path, as_of: int | None = None) -> DataFrame:
    """The table's rows at version `as_of` (default: the latest, pinned as of this call)."""
    version = current_version(table) if as_of is None else as_of
    return spark.read.format("delta").option("versionAsOf", version).load(uri(table))


def day_bounds(dated_by: str, first: dt.date, last: dt.date) -> str:
    """A SQL condition: `dated_by` falls on a day of first..last (UTC, the session's zone)."""
    end = last + dt.timedelta(days=1)
    column = f"`{dated_by}`"
    return f"{column} >= TIMESTAMP '{first} 00:00:00' AND {column} < TIMESTAMP '{end} 00:00:00'"


def write(
    df: DataFrame,
    table: Path,
    *,
    days: Mapping[dt.date, DayRecord],
    facts: Mapping[str, Any] | None = None,
    based_on: int | None,
    replace_where: str | None = None,
    new_schema: bool = False,
) -> int:
    """Commit `df` to `table` with its records, in one Delta commit; returns the version.

    `replace_where`: replace only the rows meeting this condition (all of `df` must meet it);
    else the whole table. `days`: every day's record after this write (the table's, not just
    the written ones). `based_on`: the version the records were read from (None: no table
    yet). `new_schema`: the whole table is replaced under `df`'s columns.
    """
    write_id = uuid.uuid4().hex
    metadata = {RECORDS_KEY: {"days": _encode(days), "write": write_id, **(facts or {})}}
    writer = (
        df.write.format("delta")
        .mode("overwrite")
        .option("userMetadata", json.dumps(metadata, separators=(",", ":")))
        .option("txnAppId", APP_ID)
        .option("txnVersion", 0 if based_on is None else based_on + 1)
    )
    if replace_where is not None:
        writer = writer.option("replaceWhere", replace_where)
    if new_schema:
        writer = writer.option("overwriteSchema", "true")
    try:
        writer.save(uri(table))
    except (PySparkException, Py4JJavaError) as error:
        # Delta's conflicts (ConcurrentAppend, MetadataChanged, ProtocolChanged, ...) all say
        # "concurrent" in their message
        if "concurrent" in str(error).lower():
            raise ConcurrentWriteError(
                f"{table}: another writer committed to this table while this run wrote it "
                f"(read at version {based_on}); nothing of this run was committed. Run it "
                "again; Dagster's `legiti/writes` concurrency keeps the platform's own runs "
                f"from overlapping.\n{str(error).splitlines()[0]}"
            ) from error
        raise
    commit = latest_commit(table)
    if commit is None or commit.facts.get("write") != write_id:
        # Delta skips a write whose transaction version is not newer than the table's: a
        # commit landed between reading the records and starting this write
        raise ConcurrentWriteError(
            f"{table}: another writer committed to this table (now version "
            f"{current_version(table)}) after this run read it at version {based_on}; "
            "nothing of this run was committed. Run it again."
        )
    return commit.version


def months_spanned(days: list[dt.date]) -> int:
    return (days[-1].year - days[0].year) * 12 + days[-1].month - days[0].month + 1


_MASK = 0xFFFFFFFF


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _MASK


def spark_hash_int(value: int, seed: int = 42) -> int:
    """Spark's `hash` of an int value (`Murmur3_x86_32.hashInt`, signed), what its hash
    partitioning of an int expression takes modulo the number of partitions."""
    k = ((value & _MASK) * 0xCC9E2D51) & _MASK
    k = (_rotl(k, 15) * 0x1B873593) & _MASK
    h = _rotl((seed & _MASK) ^ k, 13)
    h = (h * 5 + 0xE6546B64) & _MASK
    h ^= 4  # the input's length in bytes
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK
    h ^= h >> 16
    return h - (1 << 32) if h >= 1 << 31 else h


def partition_keys(n: int) -> list[int]:
    """Int keys k_0 .. k_n-1 such that `repartition(n, k_i)` puts k_i in partition i (Spark's
    hash partitioning: `pmod(hash(k), n)`), the same on every run."""
    found: dict[int, int] = {}
    key = 0
    while len(found) < n:
        found.setdefault(spark_hash_int(key) % n, key)
        key += 1
    return [found[i] for i in range(n)]


def clustered(
    df: DataFrame,
    dated_by: str,
    days: list[dt.date],
    then_by: Sequence[str] = (),
    *,
    repeats: str | None = None,
) -> DataFrame:
    """`df` as one file per month of `days`, each sorted by time, then by `then_by`: a later
    replacement of a few days rewrites only the files of their months.

    `repeats`: also a column of that name, true on each row whose time and `then_by` equal
    (nulls equal) those of another row sorted before it: as many as there are duplicates. Equal
    rows share a month, so a partition, where the sort puts them next to each other; the window
    follows the partitioning and the sort the write makes anyway, and adds neither.
    """
    n = months_spanned(days)
    ts = F.col(dated_by)
    month = (F.year(ts) - days[0].year) * 12 + F.month(ts) - days[0].month
    # each month's own partition by a key hashing to it: a range partitioning would first run
    # a sampling job over `df`, computing it twice when it is not cached
    keys = F.array(*(F.lit(k) for k in partition_keys(n)))
    part = "_month_partition"
    # `get`: null for a row outside the months (for Delta's replaceWhere to refuse), where
    # `element_at` would raise at index 0
    out = (
        df.withColumn(part, F.get(keys, month))
        .repartition(n, part)
        # the partition's key first: constant within it, and the order a window over it needs
        .sortWithinPartitions(part, dated_by, *then_by)
    )
    if repeats is not None:
        order = Window.partitionBy(part).orderBy(dated_by, *then_by)
        same = F.row_number().over(order) > 1
        for column in (dated_by, *then_by):
            same = same & F.lag(column).over(order).eqNullSafe(F.col(column))
        out = out.withColumn(repeats, same)
    return out.drop(part)


def vacuum(spark: SparkSession, table: Path, retention_hours: int | None = None) -> None:
    """Remove files no version within the retention period (Delta's default: 7 days) uses."""
    from delta.tables import DeltaTable as SparkDeltaTable

    SparkDeltaTable.forPath(spark, uri(table)).vacuum(retention_hours)


def committed_rows(table: Path, version: int | None = None) -> int:
    """How many rows the table holds at `version` (default: the latest), from its log alone."""
    if not is_delta(table):
        return 0
    actions = log(table, version).get_add_actions(flatten=True)
    return int(sum(actions.column("num_records").to_pylist() or [0]))
