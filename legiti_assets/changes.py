"""How the store fingerprints what it writes, so an update touches only what a change affects:
one pass over a table's rows (`profile`) counts each day's rows and fingerprints them, and a
table's records fingerprint what an unpartitioned asset was built from. The rules over those
records are `legiti_assets.records`."""

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from legiti_assets import storage


@dataclass(frozen=True)
class DayProfile:
    """What one pass over a table's rows found: each day's rows (a day by `dated_by`; None for
    rows without one, or for every row of an undated table), each day's fingerprint if asked
    for, and how many rows meet each named condition."""

    dated_by: str | None
    rows: dict[dt.date | None, int]
    content: dict[dt.date | None, str] | None
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.rows.values())


@dataclass(frozen=True)
class Profiled:
    """A daily output with its `DayProfile`: the IO manager writes `df` without counting its
    days again (the asset's checks came from the same pass)."""

    df: DataFrame
    profile: DayProfile


def profile(
    df: DataFrame,
    dated_by: str | None,
    *,
    fingerprint: bool = False,
    counts: Mapping[str, Column] | None = None,
) -> DayProfile:
    """One aggregation over `df`: rows per day, `day_fingerprints` if `fingerprint`, and the
    number of rows for which each of `counts` (a row-level condition, window functions
    allowed) is true (null reads as false).

    A day's fingerprint is `rows:sum of row hashes`. A row's hash covers every column, in name
    order, each as (is it null, its value): a null differs from any value. So any added, changed
    or removed row changes its day's fingerprint (a 64-bit hash sum: accidental collisions are
    negligible)."""
    conditions = dict(counts or {})
    names = {name: f"_count{i}" for i, name in enumerate(conditions)}
    day = F.to_date(dated_by) if dated_by else F.lit(None).cast("date")
    selected = [day.alias("_day")]
    totals = [F.count(F.lit(1)).alias("_n")]
    if fingerprint:
        selected.append(row_hash(df.columns))
        totals.append(F.sum("_h").alias("_h"))
    for name, column in names.items():
        selected.append(F.when(conditions[name], 1).otherwise(0).alias(column))
        totals.append(F.sum(column).alias(column))
    found = df.select(*selected).groupBy("_day").agg(*totals).collect()
    return DayProfile(
        dated_by=dated_by,
        rows={row["_day"]: row["_n"] for row in found},
        content={row["_day"]: f"{row['_n']}:{row['_h']}" for row in found} if fingerprint else None,
        counts={name: sum(row[column] for row in found) for name, column in names.items()},
    )


def row_hash(columns: list[str]) -> Column:
    """A row's hash (`profile`) over `columns`, as `_h`, summable without overflow."""
    # hashing the values themselves: a row's JSON took twice as long to build as to hash
    hashed = F.xxhash64(*(F.struct(F.col(c).isNull(), F.col(c)) for c in sorted(columns)))
    return hashed.cast("decimal(38,0)").alias("_h")


def day_fingerprints(df: DataFrame, dated_by: str) -> dict[dt.date | None, str]:
    """The fingerprint (`profile`) of each day of `df` that has rows, days by `dated_by`."""
    content = profile(df, dated_by, fingerprint=True).content
    assert content is not None
    return content


def tables_fingerprint(tables: Mapping[Path, int | None]) -> str:
    """The fingerprint of everything recorded of these tables, each at the version given (None:
    the latest): what an unpartitioned asset computed from all their days (a training set) was
    computed from."""
    digest = hashlib.sha256()
    for table, version in tables.items():
        commit = storage.latest_commit(table, version)
        digest.update(b"-" if commit is None else storage.encode_records(commit.days).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]
