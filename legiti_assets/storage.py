"""Atomic replacement of Parquet directories, so no reader ever sees a half-written day.

A daily table keeps one directory per month, `year=YYYY/month=M/`, holding its days' rows in
one file: a day's own directory and file made a 730-day table cost Spark 2-5 times as much to
write and read as 25 month files. A write lands in a staging directory first; each month it
touches (or a whole unpartitioned table) is then swapped in with one
`renameat2(RENAME_EXCHANGE)` call: readers see the old files or the new ones, never a mix.
Staging and trash live under `<data>/.staging`, on the same file system and outside every
table, so Spark, pandas and DuckDB globs never pick them up.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_libc = ctypes.CDLL(None, use_errno=True)


def file_uri(path: Path) -> str:
    """What Spark gets for a local path: a bare path would resolve against Hadoop's default
    file system (HDFS on YARN) while the driver swaps directories on the local one. Not
    `Path.as_uri()`: Hadoop does not decode its %-escapes, and `year=2020` has an `=`."""
    return f"file://{path.absolute()}"


Month = tuple[int, int]


def month_dir(table: Path, month: Month) -> Path:
    """Hive-style month directory, unpadded like Spark's `partitionBy(year, month)`."""
    return table / f"year={month[0]}" / f"month={month[1]}"


def months_of(days: Iterable[dt.date]) -> list[Month]:
    return sorted({(day.year, day.month) for day in days})


def days_in(month: Month) -> list[dt.date]:
    first = dt.date(month[0], month[1], 1)
    following = dt.date(month[0] + month[1] // 12, month[1] % 12 + 1, 1)
    return [first + dt.timedelta(days=i) for i in range((following - first).days)]


def stored_months(table: Path) -> list[Month]:
    """Every month directory of a table, sorted."""
    found = []
    for path in table.glob("year=*/month=*"):
        if path.is_dir():
            found.append((int(path.parent.name.split("=", 1)[1]), int(path.name.split("=", 1)[1])))
    return sorted(found)


def has_day_directories(table: Path) -> bool:
    """Whether a table is stored in the layout before month files (a directory per day)."""
    return any(table.glob("year=*/month=*/day=*"))


class LayoutError(ValueError):
    """A table is stored in the layout before month files."""


def check_layout(name: str, table: Path) -> None:
    """Raise, saying how to convert it, if `table` is stored a directory per day."""
    if has_day_directories(table):
        raise LayoutError(
            f"{name}: {table} is stored one directory per day, the layout before month files; "
            "convert every table once with `make migrate` (python -m legiti_assets.migrate)"
        )


def exchange(a: Path, b: Path) -> None:
    """Atomically swap two existing paths (Linux renameat2)."""
    result = _libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"renameat2 exchange failed: {os.strerror(errno)}", str(a))


def replace_dir(new: Path | None, live: Path, trash: Path, table: Path | None = None) -> None:
    """Make `live` hold what `new` holds (or nothing when `new` is None), atomically; parents
    of `live` left empty are removed up to `table`."""
    if new is not None and live.exists():
        exchange(new, live)
        shutil.rmtree(new)  # after the exchange `new` holds the old files
    elif new is not None:
        live.parent.mkdir(parents=True, exist_ok=True)
        os.rename(new, live)
    elif live.exists():
        trash.mkdir(parents=True, exist_ok=True)
        gone = trash / uuid.uuid4().hex
        os.rename(live, gone)
        shutil.rmtree(gone)
        _remove_empty_parents(live.parent, stop=table or live.parent)


def _remove_empty_parents(path: Path, stop: Path) -> None:
    while path != stop and path.is_dir() and not any(path.iterdir()):
        path.rmdir()
        path = path.parent


def stored_days(table: Path) -> list[dt.date]:
    """Every recorded day of a table that has rows, sorted."""
    check_layout(table.name, table)  # its records have no row counts
    return sorted(day for day, record in recorded(table).items() if record.rows)


def staging_dir(root: Path, name: str, run_id: str) -> Path:
    """A fresh staging directory for one write of `name` by one run."""
    return root / ".staging" / name / f"{run_id}-{uuid.uuid4().hex[:8]}"


def clean_staging(root: Path, name: str) -> None:
    """Drop what earlier runs that died left behind for `name` (call under `writer_lock`)."""
    shutil.rmtree(root / ".staging" / name, ignore_errors=True)


@contextlib.contextmanager
def writer_lock(root: Path, name: str, shared: bool = False) -> Iterator[None]:
    """Exclusive lock on writing table `name`, across processes; the kernel releases it when
    its holder dies, so a killed run never leaves the table locked. `shared`: a reader's lock,
    held while computing from the table, so no write swaps its days meanwhile."""
    path = root / ".staging" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


MANIFEST = "_materialized_days.json"  # "_": Spark, pandas and DuckDB globs skip it


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


def record_days(table: Path, records: Mapping[dt.date, DayRecord]) -> None:
    """Remember that these days were written, rows or not: an empty day has no directory, so
    only this tells it apart from a day never materialized. Call under `writer_lock`."""
    known = recorded(table)
    known.update(records)
    table.mkdir(parents=True, exist_ok=True)
    temporary = table / f".{MANIFEST}.{uuid.uuid4().hex}"
    stored = {
        str(day): {k: v for k, v in vars(record).items() if v is not None}
        for day, record in sorted(known.items())
    }
    temporary.write_text(json.dumps(stored))
    os.replace(temporary, table / MANIFEST)


def recorded(table: Path) -> dict[dt.date, DayRecord]:
    """Every recorded day of a table with what is known of it."""
    path = table / MANIFEST
    if not path.exists():
        return {}
    stored = json.loads(path.read_text())
    if isinstance(stored, list):  # manifests written before versions were recorded
        return {dt.date.fromisoformat(d): DayRecord() for d in stored}
    return {
        dt.date.fromisoformat(d): DayRecord(version=v)
        if v is None or isinstance(v, str)  # written before fingerprints were recorded
        else DayRecord(**v)
        for d, v in stored.items()
    }


def recorded_versions(table: Path) -> dict[dt.date, str | None]:
    """Each recorded day with the declaration version it was written under (None: unknown,
    or a table without versions)."""
    return {day: record.version for day, record in recorded(table).items()}


def recorded_days(table: Path) -> list[dt.date]:
    return sorted(recorded(table))
