"""The landing file: unusual but valid input reads the same, bad input is refused clearly."""

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from legiti_assets.landing import LandingFileError, read_landing
from legiti_assets_tests.helpers import write_landing

FIRST_DAY = dt.date(2010, 1, 1)
PLAIN = (
    "order_id,order_timestamp,cpf,chargeback_timestamp\n"
    "a,2020-05-10 00:00:01,x,\n"
    "b,2020-05-11 12:00:00,y,2020-05-12 20:00:00\n"
    "c,2020-05-11 23:59:59,x,\n"
)
EXPECTED = [
    ("a", dt.datetime(2020, 5, 10, 0, 0, 1), "x", None),
    ("b", dt.datetime(2020, 5, 11, 12), "y", dt.datetime(2020, 5, 12, 20)),
    ("c", dt.datetime(2020, 5, 11, 23, 59, 59), "x", None),
]


def events(spark, path: Path) -> list[tuple]:
    batch = read_landing(spark, str(path), FIRST_DAY)
    try:
        return sorted(tuple(row) for row in batch.events.collect())
    finally:
        batch.unpersist()


VALID_VARIANTS = {
    "plain": PLAIN,
    "bom_and_crlf": ("\ufeff" + PLAIN).replace("\n", "\r\n"),
    "quoted": PLAIN.replace("a,2020-05-10 00:00:01,x,", '"a","2020-05-10 00:00:01","x",""'),
    "reordered": (
        "cpf,chargeback_timestamp,order_id,order_timestamp\n"
        "x,,a,2020-05-10 00:00:01\n"
        "y,2020-05-12 20:00:00,b,2020-05-11 12:00:00\n"
        "x,,c,2020-05-11 23:59:59\n"
    ),
    "extra_columns_with_commas": (
        "order_id,note,order_timestamp,cpf,chargeback_timestamp\n"
        'a,"hello, world",2020-05-10 00:00:01,x,\n'
        "b,,2020-05-11 12:00:00,y,2020-05-12 20:00:00\n"
        'c,"""quoted""",2020-05-11 23:59:59,x,\n'
    ),
    "blank_lines_and_redelivered_line": PLAIN + "\n" + PLAIN.splitlines()[1] + "\n\n",
}


@pytest.mark.parametrize("name", VALID_VARIANTS)
def test_valid_variants_read_exactly_as_the_plain_file(spark, tmp_path, name: str) -> None:
    path = write_landing(tmp_path, VALID_VARIANTS[name])
    assert events(spark, path) == EXPECTED


def test_extra_columns_are_reported(spark, tmp_path) -> None:
    path = write_landing(tmp_path, VALID_VARIANTS["extra_columns_with_commas"])
    batch = read_landing(spark, str(path), FIRST_DAY)
    batch.unpersist()
    assert batch.ignored_columns == ["note"]
    assert batch.orders == 3


def test_events_are_cached_once_and_freed(spark, tmp_path) -> None:
    batch = read_landing(spark, str(write_landing(tmp_path, PLAIN)), FIRST_DAY)
    assert batch.cached is not None
    assert batch.cached.storageLevel.useMemory
    assert batch.events.columns == ["order_id", "order_timestamp", "cpf", "chargeback_timestamp"]
    batch.unpersist()
    assert not batch.cached.storageLevel.useMemory


HEADER = "order_id,order_timestamp,cpf,chargeback_timestamp\n"
# (file content, line, field or None, words the message must contain)
BAD_FILES = {
    "unparseable_timestamp": (HEADER + "a,yesterday,x,\n", 2, "order_timestamp", "yesterday"),
    "impossible_date": (HEADER + "a,2020-02-30 10:00:00,x,\n", 2, "order_timestamp", "02-30"),
    "hour_25": (HEADER + "a,2020-02-03 25:00:00,x,\n", 2, "order_timestamp", "25:00"),
    "time_zone_in_text": (HEADER + "a,2020-02-03T10:00:00Z,x,\n", 2, "order_timestamp", "UTC"),
    "offset_in_text": (HEADER + "a,2020-02-03 10:00:00+03:00,x,\n", 2, "order_timestamp", "UTC"),
    # Spark's parser raises on this text rather than returning null, whichever check reads it
    "offset_in_text_with_chargeback": (
        HEADER + "a,2020-02-03 10:00:00+03:00,x,2020-02-04 00:00:00\n",
        2,
        "order_timestamp",
        "UTC",
    ),
    "line_separator_after_timestamp": (
        HEADER + "a,2020-02-03 10:00:00\u2028,x,\n",
        2,
        "order_timestamp",
        "UTC",
    ),
    "one_digit_month_chargeback": (
        HEADER + "a,2020-02-03 10:00:00,x,2020-2-04 00:00:00\n",
        2,
        "chargeback_timestamp",
        "UTC",
    ),
    "before_first_partition": (
        HEADER + "a,2009-12-31 23:59:59,x,\n",
        2,
        "order_timestamp",
        "before the first partition, 2010-01-01 (set LEGITI_FIRST_DAY",
    ),
    "far_future": (HEADER + "a,2150-01-01 00:00:00,x,\n", 2, "order_timestamp", "not before 2100"),
    "bad_chargeback": (
        HEADER + "a,2020-02-03 10:00:00,x,soon\n",
        2,
        "chargeback_timestamp",
        "soon",
    ),
    "missing_cpf": (HEADER + "a,2020-02-03 10:00:00,,\n", 2, "cpf", "empty"),
    "missing_order_id": (
        HEADER + "b,2020-02-03 10:00:00,x,\n,2020-02-03 10:00:00,x,\n",
        3,
        "order_id",
        "empty",
    ),
    "missing_order_timestamp": (HEADER + "a,,x,\n", 2, "order_timestamp", "empty"),
    "chargeback_before_order": (
        HEADER + "a,2020-02-03 10:00:00,x,2020-02-02 10:00:00\n",
        2,
        "chargeback_timestamp",
        "before",
    ),
    "conflicting_duplicate": (
        HEADER + "a,2020-02-03 10:00:00,x,\nb,2020-02-03 10:00:00,y,\na,2020-02-04 10:00:00,x,\n",
        4,
        "order_id",
        "different values",
    ),
    "too_few_fields": (HEADER + "a,2020-02-03 10:00:00,x\n", 2, None, "4 comma-separated"),
    "too_many_fields": (HEADER + "a,2020-02-03 10:00:00,x,,extra\n", 2, None, "4 comma-separated"),
    "unterminated_quote": (HEADER + 'a,"2020-02-03 10:00:00,x,\n', 2, None, "comma-separated"),
    "very_long_cpf": (HEADER + f"a,2020-02-03 10:00:00,{'9' * 300},\n", 2, "cpf", "256"),
    "wrong_header": ("id,ts,user,cb\na,2020-02-03 10:00:00,x,\n", 1, None, "missing column"),
    "missing_column": (
        "order_id,order_timestamp,cpf\na,2020-02-03 10:00:00,x\n",
        1,
        None,
        "chargeback_timestamp",
    ),
    "duplicated_header_column": (HEADER.strip() + ",cpf\n", 1, None, "named twice"),
    "empty_file": ("", 1, None, "empty"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_files_are_refused_naming_file_line_and_field(spark, tmp_path, name: str) -> None:
    content, line, field, words = BAD_FILES[name]
    path = write_landing(tmp_path, content)
    with pytest.raises(LandingFileError) as raised:
        read_landing(spark, str(path), FIRST_DAY)
    message = str(raised.value)
    where = f"line {line}" + (f", field {field}" if field else "")
    assert str(path) in message
    assert where in message, message
    assert words in message, message


def test_header_only_gives_no_events(spark, tmp_path) -> None:
    assert events(spark, write_landing(tmp_path, HEADER)) == []


def test_non_utf8_bytes_are_refused(spark, tmp_path) -> None:
    path = write_landing(tmp_path, HEADER.encode() + b"a,2020-02-03 10:00:00,jo\xe3o,\n")
    with pytest.raises(LandingFileError, match="line 2: the line is not valid UTF-8"):
        read_landing(spark, str(path), FIRST_DAY)


def test_a_missing_file_is_refused(spark, tmp_path) -> None:
    with pytest.raises(LandingFileError, match="does not exist"):
        read_landing(spark, str(tmp_path / "nope.csv"), FIRST_DAY)


def test_only_the_first_errors_are_listed_with_a_total(spark, tmp_path) -> None:
    rows = "".join(f"o{i},bad,x,\n" for i in range(25))
    with pytest.raises(LandingFileError) as raised:
        read_landing(spark, str(write_landing(tmp_path, HEADER + rows)), FIRST_DAY)
    message = str(raised.value)
    assert "25 problem(s)" in message
    assert "line 26, field order_timestamp" not in message
    assert "and 15 more" in message


def test_line_numbers_hold_across_file_splits(spark, tmp_path) -> None:
    """A file large enough for Spark to split it still gets exact line numbers."""
    good = "".join(f"o{i},2020-02-03 10:00:00,u{i % 97},\n" for i in range(200_000))
    path = write_landing(tmp_path, HEADER + good + "bad,2020-13-01 00:00:00,x,\n")
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(1 << 20))
    try:
        with pytest.raises(LandingFileError, match="line 200002, field order_timestamp"):
            read_landing(spark, str(path), FIRST_DAY)
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")


HUGE_LINE_CHECK = """
import datetime as dt, sys
from legiti_assets.landing import LandingFileError, read_landing
from legiti_assets.resources import SparkResource
try:
    read_landing(SparkResource(master="local[1]").spark_session, sys.argv[1], dt.date(2010, 1, 1))
except LandingFileError as error:
    print(error)
"""


def test_a_100_mb_line_is_refused_without_parsing_it(tmp_path) -> None:
    """In its own Spark with the default driver memory: a JVM this line brought down would
    take the suite's shared session with it."""
    path = tmp_path / "order_events" / "input.csv"
    path.parent.mkdir(parents=True)
    with open(path, "wb") as handle:
        handle.write(HEADER.encode() + b"a,2020-02-03 10:00:00,x,\n")
        handle.write(b"b" * (100 << 20) + b",2020-02-03 10:00:00,y,\n")
    run = subprocess.run(
        [sys.executable, "-c", HUGE_LINE_CHECK, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "line 3: the line is longer than 65536 bytes" in run.stdout, run.stderr[-2000:]
