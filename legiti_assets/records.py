"""What is recorded of each stored day, and the pure rules over those records that tell which
days are out of date. No Spark, no Dagster: the planner and the tests read these alone.

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

# The fingerprint of a day without rows.
EMPTY = "0:0"
# What a feature-set day's inputs record of a source day never ingested: unlike an empty one, so
# that ingesting it, even empty, recomputes the days that read it (and runs their lookback check
# again, which flagged it).
MISSING = "-"


@dataclass(frozen=True)
class DayRecord:
    """What is known of one written day: the declaration `version` it was computed under
    (feature sets), a fingerprint of its rows (`content`, raw tables) and of the source days it
    was computed from (`inputs`, feature sets), and how many `rows` it has. None: not recorded
    for this table."""

    version: str | None = None
    content: str | None = None
    inputs: str | None = None
    rows: int | None = None

    @property
    def token(self) -> str:
        """What identifies this computation of the day (the online store records which one it
        mirrors)."""
        return f"{self.version}/{self.content}/{self.inputs}"


def rows_of(fingerprint: str) -> int:
    """The number of rows a day fingerprint counts."""
    return int(fingerprint.split(":", 1)[0])


def inputs_fingerprint(
    source: Mapping[dt.date, DayRecord], day: dt.date, lookback_days: int
) -> str:
    """The fingerprint of the source days a feature-set day is computed from; a day never
    ingested counts as `MISSING`, not as empty."""
    parts = []
    for back in range(lookback_days, 0, -1):
        record = source.get(day - dt.timedelta(days=back))
        parts.append(MISSING if record is None else str(record.content))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def day_range(first: dt.date, last: dt.date) -> list[dt.date]:
    """first .. last, both included."""
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
