"""Atomic directory replacement."""

import datetime as dt
from pathlib import Path

from legiti_assets import storage


def _dir_with(path: Path, name: str, text: str) -> Path:
    path.mkdir(parents=True)
    (path / name).write_text(text)
    return path


def test_replace_swaps_new_files_in_and_drops_the_old(tmp_path) -> None:
    live = _dir_with(tmp_path / "t" / "year=2020" / "month=5" / "day=1", "old.parquet", "old")
    new = _dir_with(tmp_path / "staged", "new.parquet", "new")
    storage.replace_dir(new, live, tmp_path / "trash")
    assert [p.name for p in live.iterdir()] == ["new.parquet"]
    assert not new.exists()


def test_replace_creates_a_missing_day(tmp_path) -> None:
    live = tmp_path / "t" / "year=2020" / "month=5" / "day=1"
    storage.replace_dir(_dir_with(tmp_path / "staged", "new.parquet", "new"), live, tmp_path / "x")
    assert (live / "new.parquet").read_text() == "new"


def test_replace_with_nothing_removes_the_day_and_empty_parents(tmp_path) -> None:
    table = tmp_path / "t"
    live = _dir_with(storage.day_dir(table, dt.date(2020, 5, 1)), "old.parquet", "old")
    keep = _dir_with(storage.day_dir(table, dt.date(2021, 1, 2)), "k.parquet", "k")
    storage.replace_dir(None, live, tmp_path / "trash")
    assert not (table / "year=2020").exists()
    assert keep.is_dir()
    assert storage.stored_days(table) == [dt.date(2021, 1, 2)]
