"""`legiti_assets.run.first_order_day`: the landing's first order day, read in blocks."""

import datetime as dt
from pathlib import Path

from legiti_assets.run import _BLOCK_BYTES, first_order_day

HEADER = "order_id,order_timestamp,cpf,chargeback_timestamp\n"


def _write(path: Path, days: list[str]) -> None:
    lines = (f"o{i},{day} 12:00:00,{i:011d},\n" for i, day in enumerate(days))
    path.write_text(HEADER + "".join(lines))


def test_the_first_day_is_found_past_the_first_block_and_in_a_later_file(tmp_path) -> None:
    # about 40 bytes a line: the earliest order of the first file is in its third block
    lines_per_block = _BLOCK_BYTES // 30
    _write(
        tmp_path / "a.csv",
        ["2019-03-05"] * (2 * lines_per_block) + ["2019-03-02"] + ["2019-03-09"] * 10,
    )
    assert (tmp_path / "a.csv").stat().st_size > 2 * _BLOCK_BYTES
    assert first_order_day(tmp_path) == dt.date(2019, 3, 2)
    _write(tmp_path / "b.csv", ["2019-04-01", "2019-02-28"])
    assert first_order_day(tmp_path) == dt.date(2019, 2, 28)


def test_an_unreadable_first_timestamp_or_an_empty_landing_tells_nothing(tmp_path) -> None:
    assert first_order_day(tmp_path) is None
    _write(tmp_path / "a.csv", ["2019-03-05", "2018-13-01"])
    assert first_order_day(tmp_path) is None
