"""Atomic directory replacement."""

import datetime as dt
from pathlib import Path

from legiti_assets import storage


def _dir_with(path: Path, name: str, text: str) -> Path:
    path.mkdir(parents=True)
    (path / name).write_text(text)
    return path


def test_replace_swaps_new_files_in_and_drops_the_old(tmp_path) -> None:
    live = _dir_with(tmp_path / "t" / "year=2020" / "month=5", "old.parquet", "old")
    new = _dir_with(tmp_path / "staged", "new.parquet", "new")
    storage.replace_dir(new, live, tmp_path / "trash")
    assert [p.name for p in live.iterdir()] == ["new.parquet"]
    assert not new.exists()


def test_replace_creates_a_missing_month(tmp_path) -> None:
    live = tmp_path / "t" / "year=2020" / "month=5"
    storage.replace_dir(_dir_with(tmp_path / "staged", "new.parquet", "new"), live, tmp_path / "x")
    assert (live / "new.parquet").read_text() == "new"


def test_replace_with_nothing_removes_the_month_and_empty_parents(tmp_path) -> None:
    table = tmp_path / "t"
    live = _dir_with(storage.month_dir(table, (2020, 5)), "old.parquet", "old")
    keep = _dir_with(storage.month_dir(table, (2021, 1)), "k.parquet", "k")
    storage.replace_dir(None, live, tmp_path / "trash", table)
    assert not (table / "year=2020").exists()
    assert keep.is_dir()
    assert table.is_dir()
    assert storage.stored_months(table) == [(2021, 1)]


def test_months_and_their_days() -> None:
    days = [dt.date(2020, 12, 31), dt.date(2020, 2, 1), dt.date(2021, 1, 1), dt.date(2020, 2, 9)]
    assert storage.months_of(days) == [(2020, 2), (2020, 12), (2021, 1)]
    assert len(storage.days_in((2020, 2))) == 29
    assert storage.days_in((2020, 12))[-1] == dt.date(2020, 12, 31)
    assert storage.days_in((2021, 1))[0] == dt.date(2021, 1, 1)


def test_stored_days_are_the_recorded_days_with_rows(tmp_path) -> None:
    storage.record_days(
        tmp_path,
        {
            dt.date(2020, 5, 2): storage.DayRecord(rows=3),
            dt.date(2020, 5, 1): storage.DayRecord(rows=0),
            dt.date(2020, 4, 30): storage.DayRecord(rows=1),
        },
    )
    assert storage.stored_days(tmp_path) == [dt.date(2020, 4, 30), dt.date(2020, 5, 2)]
    assert storage.recorded_days(tmp_path) == [
        dt.date(2020, 4, 30),
        dt.date(2020, 5, 1),
        dt.date(2020, 5, 2),
    ]
