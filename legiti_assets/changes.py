"""How the store notices change, so an update touches only what a change affects.

Each raw day records a fingerprint of its rows (`content`); each feature-set day records the
fingerprint of the raw days it was computed from (`inputs`: days D - lookback .. D - 1) and its
declaration version. A raw day is out of date when the landing's rows of that day fingerprint
differently; a feature-set day when its version or inputs differ from what is stored now, or it
was never written. Partial re-runs in any order are covered: whatever wrote a raw day, the
feature days computed from its old rows no longer match it.
"""

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from legiti_assets import storage
from legiti_assets.storage import DayRecord

# The fingerprint of a day without rows.
EMPTY = "0:0"


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
        # hashing the values themselves: a row's JSON took twice as long to build as to hash
        row_hash = F.xxhash64(*(F.struct(F.col(c).isNull(), F.col(c)) for c in sorted(df.columns)))
        selected.append(row_hash.cast("decimal(38,0)").alias("_h"))
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


def day_fingerprints(df: DataFrame, dated_by: str) -> dict[dt.date | None, str]:
    """The fingerprint (`profile`) of each day of `df` that has rows, days by `dated_by`."""
    content = profile(df, dated_by, fingerprint=True).content
    assert content is not None
    return content


def rows_of(fingerprint: str) -> int:
    """The number of rows a day fingerprint counts."""
    return int(fingerprint.split(":", 1)[0])


def inputs_fingerprint(
    source: Mapping[dt.date, DayRecord], day: dt.date, lookback_days: int
) -> str:
    """The fingerprint of the source days a feature-set day is computed from. A day never
    ingested reads as no rows, like an empty one: the engine read none either way."""
    parts = []
    for back in range(lookback_days, 0, -1):
        record = source.get(day - dt.timedelta(days=back))
        parts.append(EMPTY if record is None else str(record.content))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


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


def day_range(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def contiguous(days: Iterable[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Sorted days as maximal (first, last) runs of consecutive days."""
    ranges: list[tuple[dt.date, dt.date]] = []
    for day in sorted(set(days)):
        if ranges and day == ranges[-1][1] + dt.timedelta(days=1):
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def raw_days_to_ingest(
    landing: Mapping[dt.date, str],
    stored: Mapping[dt.date, DayRecord],
    first: dt.date,
    last: dt.date,
) -> list[dt.date]:
    """Days of [first, last] whose stored rows are not the landing's: never written, or
    written with other rows (added, changed, moved or withdrawn records)."""
    return [
        day
        for day in day_range(first, last)
        if day not in stored or stored[day].content != landing.get(day, EMPTY)
    ]


def stale_feature_days(
    stored: Mapping[dt.date, DayRecord],
    source: Mapping[dt.date, DayRecord],
    version: str,
    lookback_days: int,
    first: dt.date,
    last: dt.date,
) -> list[dt.date]:
    """Days of [first, last] never written, or written under another declaration or from other
    source rows than the source holds now."""
    stale = []
    for day in day_range(first, last):
        record = stored.get(day)
        if (
            record is None
            or record.version != version
            or record.inputs != inputs_fingerprint(source, day, lookback_days)
        ):
            stale.append(day)
    return stale


def describe(days: Iterable[dt.date]) -> str:
    """`12 days: 2020-01-01..2020-01-10, 2020-03-02, 2020-03-05` (ranges of consecutive days)."""
    ranges = contiguous(days)
    count = sum((last - first).days + 1 for first, last in ranges)
    if not count:
        return "none"
    spans = [str(a) if a == b else f"{a}..{b}" for a, b in ranges]
    shown = ", ".join(spans[:6])
    if len(spans) > 6:
        shown += f", ... ({len(spans) - 6} more ranges)"
    return f"{count} day{'s' if count > 1 else ''}: {shown}"
