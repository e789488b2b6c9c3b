"""The landing is every *.csv of its directory, in name order: a later file's record of an order
replaces the earlier one; an order in no file is gone."""

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import pytest

from legiti_assets import run
from legiti_assets.landing import LandingFileError, read_landing_dir
from legiti_assets_tests.helpers import SAMPLE, dataset_rows, feature_rows, resources_for

FIRST_DAY = dt.date(2010, 1, 1)
HEADER = "order_id,order_timestamp,cpf,chargeback_timestamp\n"


def _events(spark, directory: Path) -> list[tuple]:
    batch = read_landing_dir(spark, directory, FIRST_DAY)
    try:
        return sorted(tuple(row) for row in batch.events.collect())
    finally:
        batch.unpersist()


def test_later_files_restate_orders(spark, tmp_path) -> None:
    landing = tmp_path / "order_events"
    landing.mkdir()
    (landing / "2020-05-01.csv").write_text(
        HEADER + "a,2020-05-01 10:00:00,x,\nb,2020-05-01 11:00:00,y,\nc,2020-05-01 12:00:00,z,\n"
    )
    # a's time corrected to another day, b's chargeback reported; c not restated
    (landing / "2020-06-01.csv").write_text(
        HEADER + "a,2020-05-03 10:00:00,x,\nb,2020-05-01 11:00:00,y,2020-05-30 09:00:00\n"
    )
    (landing / "notes.txt").write_text("not part of the landing")
    assert _events(spark, landing) == [
        ("a", dt.datetime(2020, 5, 3, 10), "x", None),
        ("b", dt.datetime(2020, 5, 1, 11), "y", dt.datetime(2020, 5, 30, 9)),
        ("c", dt.datetime(2020, 5, 1, 12), "z", None),
    ]
    # the file named last wins, whatever the order they were written in
    (landing / "2020-04-01.csv").write_text(HEADER + "c,2020-04-30 08:00:00,z,\n")
    assert _events(spark, landing)[2] == ("c", dt.datetime(2020, 5, 1, 12), "z", None)


def test_a_bad_line_is_reported_with_its_file(spark, tmp_path) -> None:
    landing = tmp_path / "order_events"
    landing.mkdir()
    (landing / "a.csv").write_text(HEADER + "a,2020-05-01 10:00:00,x,\n")
    (landing / "b.csv").write_text(HEADER + "b,2020-05-01 11:00:00,y,\nc,2020-05-32 00:00:00,z,\n")
    with pytest.raises(LandingFileError) as error:
        read_landing_dir(spark, landing, FIRST_DAY)
    assert str(error.value).startswith(f"{landing / 'b.csv'}: 1 problem(s)")
    assert "line 3, field order_timestamp: '2020-05-32 00:00:00'" in str(error.value)


def test_an_empty_landing_directory_is_refused(spark, tmp_path) -> None:
    with pytest.raises(LandingFileError, match=r"no \*\.csv landing file"):
        read_landing_dir(spark, tmp_path, FIRST_DAY)


def test_a_drop_gives_what_the_merged_file_gives(spark, tmp_path) -> None:
    """The sample plus a drop restating two orders builds exactly what one file with the
    restated records builds: b moved to another day, h's chargeback reported late."""
    drop = HEADER + "b,2020-04-20 10:00:00,y,\nh,2020-07-15 02:00:00,x,2020-07-16 08:00:00\n"
    lines = SAMPLE.read_text().splitlines(keepends=True)
    merged = "".join(
        line if not line.startswith(("b,", "h,")) else "" for line in lines
    ) + drop.removeprefix(HEADER)
    built = {}
    for name, files in {
        "drops": {"input.csv": SAMPLE.read_text(), "zz-drop.csv": drop},
        "merged": {"input.csv": merged},
    }.items():
        data_dir = tmp_path / name
        (data_dir / "order_events").mkdir(parents=True)
        for file, text in files.items():
            (data_dir / "order_events" / file).write_text(text)
        with dg.DagsterInstance.ephemeral() as instance:
            run.materialize(
                dt.date(2018, 5, 12), dt.date(2020, 7, 17), instance, resources_for(data_dir)
            )
        built[name] = data_dir
    for table in ("user_orders", "user_chargebacks"):
        assert feature_rows(built["drops"], table) == feature_rows(built["merged"], table)
    rows = dataset_rows(built["drops"])
    assert rows == dataset_rows(built["merged"])
    assert [r for r in rows if r[0] in ("b", "h")] == [
        ("b", dt.datetime(2020, 4, 20, 10), None, "y", 0, 0, 0, 0, 0, 0),
        ("h", dt.datetime(2020, 7, 15, 2), dt.datetime(2020, 7, 16, 8), "x", 0, 0, 0, 1, 1, 2),
    ]
    shutil.rmtree(tmp_path / "merged")
