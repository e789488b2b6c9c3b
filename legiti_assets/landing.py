"""Reading and validating the landing of order events: every `*.csv` of one directory.

Files are read in name order as one table: an `order_id` restated in a later file replaces the
earlier record (a chargeback reported weeks later arrives as the order again, now with its
`chargeback_timestamp`; a corrected `order_timestamp` likewise), and an order that no longer
appears in any file is gone. Within one file the rules below hold.

The landing format is a UTF-8 CSV (a BOM and CRLF line ends are fine), one record per line,
whose header names at least `order_id,order_timestamp,cpf,chargeback_timestamp` in any order
(extra columns are ignored). Timestamps are `YYYY-MM-DD HH:MM:SS` in UTC; an empty
`chargeback_timestamp` means no chargeback is known. Anything else is refused with a
`LandingFileError` naming the file, the line and the field, before anything is written.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from legiti_assets import changes
from legiti_assets.locations import location, uri
from legiti_assets.settings import FIRST_DAY_ENV

REQUIRED_COLUMNS = ("order_id", "order_timestamp", "cpf", "chargeback_timestamp")
TIMESTAMP_COLUMNS = ("order_timestamp", "chargeback_timestamp")
# Java regex (Spark's rlike): `\z` is the end of the text; `$` also matches before a final
# line terminator such as U+2028, which would then reach the parser
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\z"
LAST_DAY_EXCLUSIVE = dt.date(2100, 1, 1)
MAX_ID_LENGTH = 256
MAX_HEADER_BYTES = 1 << 20
MAX_LINE_BYTES = 1 << 16
MAX_REPORTED_ERRORS = 10
# Each raw table of the landing's orders: the rows whose timestamp of this name is set, dated by
# it (every order has an order_timestamp; only a charged-back order a chargeback_timestamp).
DATED_BY = {"order_events": "order_timestamp", "chargeback_events": "chargeback_timestamp"}


@dataclass
class LandingFileError(Exception):
    """The landing file cannot be ingested; `problems` are `(line, field, message)`."""

    path: str
    problems: list[tuple[int | None, str | None, str]]
    total: int = 0

    def __str__(self) -> str:
        total = max(self.total, len(self.problems))
        lines = [f"{self.path}: {total} problem(s) in the landing file; nothing was written."]
        for line, column, message in self.problems:
            where = f"line {line}" if line is not None else "file"
            lines.append(f"  {where}" + (f", field {column}" if column else "") + f": {message}")
        if total > len(self.problems):
            lines.append(f"  ... and {total - len(self.problems)} more")
        return "\n".join(lines)


@dataclass(frozen=True)
class RawDay:
    """One day of a raw table, from the pass that validated the landing: its rows, their
    fingerprint (`changes.profile`'s) and how many rows break each of `row_checks`."""

    rows: int
    content: str
    violations: dict[str, int]


@dataclass
class LandingBatch:
    """The validated events: one row per order, with typed timestamps, and each raw table's
    days (`DATED_BY`) as the same pass over them found them. Persisted: call `unpersist` when
    done with them."""

    events: DataFrame
    # what is persisted: `events` itself, or what `events` is a projection of
    cached: DataFrame
    raw_days: dict[str, dict[dt.date, RawDay]]
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def orders(self) -> int:
        """How many orders: every one has an order_timestamp, so a row of order_events."""
        return sum(day.rows for day in self.raw_days["order_events"].values())

    def unpersist(self) -> None:
        self.cached.unpersist()

    def raw_table(self, name: str) -> DataFrame:
        """The rows of raw table `name`, every day."""
        return self.events.where(F.col(DATED_BY[name]).isNotNull())

    def profile(self, name: str, days: list[dt.date]) -> changes.DayProfile:
        """Raw table `name`'s profile of `days` (a contiguous range): each day's rows and
        fingerprint, and each check's violations over them."""
        found = {d: r for d, r in self.raw_days[name].items() if days[0] <= d <= days[-1]}
        return changes.DayProfile(
            dated_by=DATED_BY[name],
            rows={d: r.rows for d, r in found.items()},
            content={d: r.content for d, r in found.items()},
            counts={
                check: sum(r.violations[check] for r in found.values())
                for check in row_checks(DATED_BY[name])
            },
        )


def row_checks(dated_by: str) -> dict[str, Column]:
    """The row checks of the raw table dated by `dated_by`, over validated rows (`repeat`'s
    column: a row after the first of its order_id in the table), each as the condition on a
    row that breaks it. The validation refuses a landing that breaks any: these count what the
    tables get, as a guard."""
    found = {
        "unique_order_id": F.col(_repeat(dated_by)),
        "non_null_keys": F.col("order_id").isNull()
        | F.col("cpf").isNull()
        | F.col("order_timestamp").isNull(),
    }
    if dated_by == "chargeback_timestamp":
        found["chargeback_after_order"] = F.col("chargeback_timestamp") < F.col("order_timestamp")
    return found


def _repeat(dated_by: str) -> str:
    return f"_repeat_{dated_by}"


EVENT_COLUMNS = ("order_id", "order_timestamp", "cpf", "chargeback_timestamp")


def profile_raw_tables(flagged: DataFrame) -> tuple[int, dict[str, dict[dt.date, RawDay]]]:
    """One aggregation over flagged rows (the events' columns and `_bad`): how many lines have
    problems, and each raw table's days from the good rows. Rows partitioned by order_id (as
    `read_landing` leaves them) are not shuffled again."""
    # a good row after the first good one of its order_id in each table: that table's repeat
    by_id = (
        Window.partitionBy("order_id")
        .orderBy("_bad", *EVENT_COLUMNS)
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    for by in DATED_BY.values():
        in_table = ~F.col("_bad") & F.col(by).isNotNull()
        earlier = F.sum(F.when(in_table, 1).otherwise(0)).over(by_id)
        flagged = flagged.withColumn(_repeat(by), in_table & (earlier > 1))
    checks = {name: row_checks(by) for name, by in DATED_BY.items()}
    names = sorted({check for found in checks.values() for check in found})
    group = "struct<t:string,d:date>"
    keys = F.when(F.col("_bad"), F.array(F.lit(None).cast(group))).otherwise(
        F.filter(
            F.array(
                *[
                    F.when(
                        F.col(by).isNotNull(),
                        F.struct(F.lit(name).alias("t"), F.to_date(by).alias("d")),
                    )
                    for name, by in DATED_BY.items()
                ]
            ),
            lambda key: key.isNotNull(),
        )
    )
    counted = []
    for i, check in enumerate(names):
        # a check a table lacks counts 0 for it
        condition = F.lit(False)
        for name, found in checks.items():
            if check in found:
                condition = condition | ((F.col("_k.t") == name) & found[check])
        counted.append(F.sum(F.when(condition, 1).otherwise(0)).alias(f"_c{i}"))
    rows = (
        flagged.select(F.explode(keys).alias("_k"), changes.row_hash(list(EVENT_COLUMNS)), "*")
        .groupBy("_k")
        .agg(F.count(F.lit(1)).alias("_n"), F.sum("_h").alias("_h"), *counted)
        .collect()
    )
    bad, days = 0, {name: {} for name in DATED_BY}
    for row in rows:
        if row["_k"] is None:
            bad = row["_n"]
            continue
        name = row["_k"]["t"]
        days[name][row["_k"]["d"]] = RawDay(
            rows=row["_n"],
            content=f"{row['_n']}:{row['_h']}",
            violations={c: row[f"_c{i}"] for i, c in enumerate(names) if c in checks[name]},
        )
    return bad, days


def read_header(path: str | Path) -> list[str]:
    """The header's column names, checked for the required ones."""
    if isinstance(path, str):
        path = location(path)
    if not path.is_file():
        raise LandingFileError(str(path), [(None, None, "the landing file does not exist")])
    with path.open("rb") as handle:
        # an object store's file objects take no size in readline()
        first = handle.read(MAX_HEADER_BYTES)
    end = first.find(b"\n")
    first = first[: end + 1] if end >= 0 else first
    if not first.strip():
        raise LandingFileError(str(path), [(1, None, "the file is empty: expected a header line")])
    if not first.endswith(b"\n") and len(first) >= MAX_HEADER_BYTES:
        raise LandingFileError(str(path), [(1, None, "the header line is longer than 1 MiB")])
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        problem = (1, None, f"the header is not UTF-8: {error}")
        raise LandingFileError(str(path), [problem]) from None
    header = [name.strip() for name in next(csv.reader([text.rstrip("\r\n")]))]
    problems: list[tuple[int | None, str | None, str]] = []
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        problems.append(
            (1, None, f"wrong header {header!r}: missing column(s) {', '.join(missing)}")
        )
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        problems.append((1, None, f"column(s) named twice: {', '.join(duplicated)}"))
    if problems:
        raise LandingFileError(str(path), problems)
    return header


def _timestamp(column: str) -> Column:
    """The column's timestamp, or null unless it is `YYYY-MM-DD HH:MM:SS` of a real instant.
    Only text of that shape is parsed: Spark raises, rather than returning null, on text its
    legacy parser would have read (an offset, a one-digit month)."""
    raw = F.col(column)
    return F.when(raw.rlike(TIMESTAMP_PATTERN), F.to_timestamp(raw, "yyyy-MM-dd HH:mm:ss"))


# Each timestamp column's parsed value, parsed once per line: every check and the events use it.
PARSED = {column: f"_{column}" for column in TIMESTAMP_COLUMNS}


def _problems(first_day: dt.date) -> list[tuple[str, Column]]:
    """(field, message) for each check of a line's fields and `PARSED` timestamps; the
    message column is null when the line is fine."""
    checks: list[tuple[str, Column]] = []
    for column in ("order_id", "cpf"):
        value = F.col(column)
        checks.append((column, F.when(value.isNull(), F.lit("is empty"))))
        checks.append(
            (
                column,
                F.when(
                    F.length(value) > MAX_ID_LENGTH,
                    F.lit(f"is longer than {MAX_ID_LENGTH} characters"),
                ),
            )
        )
    for column in TIMESTAMP_COLUMNS:
        raw, parsed = F.col(column), F.col(PARSED[column])
        bad_format = parsed.isNull()
        shown = F.substring(raw, 1, 40)
        checks.append(
            (
                column,
                F.when(
                    raw.isNotNull() & bad_format,
                    F.concat(F.lit("'"), shown, F.lit("' is not a UTC 'YYYY-MM-DD HH:MM:SS'")),
                )
                .when(
                    raw.isNotNull() & (F.to_date(parsed) < F.lit(first_day)),
                    F.concat(
                        F.lit("'"),
                        shown,
                        F.lit(
                            f"' is before the first partition, {first_day} (set "
                            f"{FIRST_DAY_ENV} to the data's first day, then restart make dev)"
                        ),
                    ),
                )
                .when(
                    raw.isNotNull() & (parsed >= F.lit(LAST_DAY_EXCLUSIVE)),
                    F.concat(F.lit("'"), shown, F.lit(f"' is not before {LAST_DAY_EXCLUSIVE}")),
                ),
            )
        )
    checks.append(("order_timestamp", F.when(F.col("order_timestamp").isNull(), F.lit("is empty"))))
    checks.append(
        (
            "chargeback_timestamp",
            F.when(
                F.col(PARSED["chargeback_timestamp"]) < F.col(PARSED["order_timestamp"]),
                F.lit("is before the order's order_timestamp"),
            ),
        )
    )
    return checks


def _line_numbers(lines: DataFrame, row_ids: list[int]) -> dict[int, int]:
    """Map `monotonically_increasing_id` values of `lines` to 1-based line numbers.

    The id packs (partition, position in partition); the splits of one text file are in file
    order, so counting each partition's lines gives every partition's first line. Only needed
    on the error path, so the happy path reads the file once.
    """
    sizes = dict(
        lines.groupBy(F.spark_partition_id().alias("p")).count().select("p", "count").collect()
    )
    first_line, offsets = 1, {}
    for partition in sorted(sizes):
        offsets[partition] = first_line
        first_line += sizes[partition]
    return {rid: offsets[rid >> 33] + (rid & ((1 << 33) - 1)) for rid in row_ids}


def _checked(lines: DataFrame, header: list[str], first_day: dt.date) -> DataFrame:
    """Each record line (not the header, not blank) as `_row`, its fields, their `PARSED`
    timestamps, `_bad` (whether any check failed) and `_problems`: the messages of its failed
    checks, as `field:message`."""
    schema = ", ".join(f"`c{i}` string" for i in range(len(header))) + ", `_corrupt` string"
    value = F.col("value")
    too_long = F.octet_length(value) > MAX_LINE_BYTES
    # a huge line is refused as it is: never copied, decoded or split into fields
    records = lines.where((F.col("_row") > 0) & (too_long | (F.trim(value) != ""))).select(
        "_row",
        too_long.alias("_too_long"),
        # Spark keeps the raw bytes; decoding replaces invalid ones, so a round trip differs
        F.when(~too_long, F.encode(value, "UTF-8") != value.cast("binary")).alias("_not_utf8"),
        F.from_csv(
            F.when(~too_long, value),
            schema,
            {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt"},
        ).alias("r"),
    )
    wanted = {name: i for i, name in enumerate(header) if name in REQUIRED_COLUMNS}
    raw = records.select(
        "_row",
        "_too_long",
        "_not_utf8",
        F.col("r._corrupt").isNotNull().alias("_malformed"),
        *[F.col(f"r.c{wanted[name]}").alias(name) for name in REQUIRED_COLUMNS],
    )
    # a column of its own, so the optimizer parses each timestamp once, not once per check
    for column, parsed in PARSED.items():
        raw = raw.withColumn(parsed, _timestamp(column))
    problem_list = [
        F.when(F.col("_not_utf8"), F.lit("_:the line is not valid UTF-8")),
        F.when(
            F.col("_malformed"),
            F.lit(f"_:expected {len(header)} comma-separated fields as in the header"),
        ),
        *[F.concat(F.lit(f"{name}:"), message) for name, message in _problems(first_day)],
    ]
    return raw.withColumn(
        "_problems",
        F.when(
            F.col("_too_long"), F.array(F.lit(f"_:the line is longer than {MAX_LINE_BYTES} bytes"))
        ).otherwise(F.filter(F.array(*problem_list), lambda p: p.isNotNull())),
    ).withColumn(
        # whether the line has any problem, without listing them: Spark evaluates `filter`, a
        # function of a lambda, row by row without generated code (ten times the cost)
        "_bad",
        F.col("_too_long") | F.coalesce(*problem_list).isNotNull(),
    )


def read_landing(spark: SparkSession, path: str | Path, first_day: dt.date) -> LandingBatch:
    """Parse and validate the whole landing file, or raise `LandingFileError`."""
    if isinstance(path, str):
        path = location(path)
    header = read_header(path)
    lines = spark.read.text(uri(path)).withColumn("_row", F.monotonically_increasing_id())
    checked = _checked(lines, header, first_day)
    has_problems = F.col("_bad")
    # identical lines of one order are a re-delivery, kept once; a line with a problem is
    # kept too, flagged, so one pass over the file validates it, caches the events and profiles
    # the raw tables. Lines go by order_id: the re-deliveries and the versions of one order meet
    # without a shuffle of their own.
    flagged = (
        checked.select(
            "order_id",
            F.col(PARSED["order_timestamp"]).alias("order_timestamp"),
            "cpf",
            F.col(PARSED["chargeback_timestamp"]).alias("chargeback_timestamp"),
            has_problems.alias("_bad"),
        )
        .repartition("order_id")
        .dropDuplicates()
    )
    cached = flagged.persist()
    try:
        bad_records, raw_days = profile_raw_tables(cached)
        if bad_records:
            bad = checked.where(has_problems)
            sample = bad.orderBy("_row").select("_row", "_problems").limit(MAX_REPORTED_ERRORS)
            rows = sample.collect()
            _raise_row_problems(
                lines, path, [(r["_row"], r["_problems"]) for r in rows], bad.count()
            )
        # an order_id with two versions: only then is it worth finding their line numbers
        if any(d.violations["unique_order_id"] for d in raw_days["order_events"].values()):
            _raise_duplicates(lines, checked, path)
    except BaseException:
        cached.unpersist()
        raise
    return LandingBatch(
        events=cached.drop("_bad"),
        cached=cached,
        raw_days=raw_days,
        ignored_columns=[c for c in header if c not in REQUIRED_COLUMNS],
    )


def _raise_row_problems(
    lines: DataFrame, path: Path, rows: list[tuple[int, list[str]]], total: int
) -> None:
    numbers = _line_numbers(lines, [row_id for row_id, _ in rows])
    problems: list[tuple[int | None, str | None, str]] = []
    for row_id, messages in rows:
        for message in messages:
            column, text = message.split(":", 1)
            problems.append((numbers[row_id], None if column == "_" else column, text))
    raise LandingFileError(str(path), problems[:MAX_REPORTED_ERRORS], total)


def _raise_duplicates(lines: DataFrame, checked: DataFrame, path: Path) -> NoReturn:
    """Name the lines of order_ids that appear with different values (a re-delivery of the
    same line is fine)."""
    by_id = Window.partitionBy("order_id")
    versions = F.size(
        F.collect_set(
            F.concat_ws(
                "\u0000", "order_timestamp", "cpf", F.coalesce("chargeback_timestamp", F.lit(""))
            )
        ).over(by_id)
    )
    conflicts = checked.select("_row", "order_id", versions.alias("versions")).where(
        F.col("versions") > 1
    )
    rows = conflicts.orderBy("order_id", "_row").limit(MAX_REPORTED_ERRORS).collect()
    total = conflicts.count()
    numbers = _line_numbers(lines, [r["_row"] for r in rows])
    raise LandingFileError(
        path,
        [
            (numbers[r["_row"]], "order_id", "the same order_id appears with different values")
            for r in rows
        ],
        total,
    )


def landing_files(directory: Path) -> list[Path]:
    """The landing's files, in the order their restatements apply: by name."""
    return sorted(p for p in directory.glob("*.csv") if p.is_file())


# While `keep_landing` is active (blocks may nest): the landing read last, by what identifies it.
_kept: dict[tuple[object, ...], LandingBatch] = {}
_keeping = 0


@contextlib.contextmanager
def keep_landing() -> Iterator[None]:
    """Within this block the process validates the landing once: the runs of an update (one
    per range of days) share it while its files are unchanged. Unpersisted at the end."""
    global _keeping
    _keeping += 1
    try:
        yield
    finally:
        _keeping -= 1
        if not _keeping:
            for batch in _kept.values():
                batch.unpersist()
            _kept.clear()


def release(batch: LandingBatch) -> None:
    """Done with `batch`: free it, unless `keep_landing` keeps it for the next run."""
    if not any(kept is batch for kept in _kept.values()):
        batch.unpersist()


def read_landing_dir(spark: SparkSession, directory: Path, first_day: dt.date) -> LandingBatch:
    """Every file of the landing, each validated on its own (a message names its file and
    line), then one record per order: the one of the last file that states it. Call `release`
    when done with it."""
    files = landing_files(directory)
    stats = [(str(p), p.stat()) for p in files]
    identity = (first_day, *((p, s.st_size, s.st_mtime_ns) for p, s in stats))
    if identity in _kept:
        return _kept[identity]
    batch = _read_landing_files(spark, directory, files, first_day)
    if _keeping:
        for old in _kept.values():
            old.unpersist()
        _kept.clear()
        _kept[identity] = batch
    return batch


def _read_landing_files(
    spark: SparkSession, directory: Path, files: list[Path], first_day: dt.date
) -> LandingBatch:
    if not files:
        raise LandingFileError(
            str(directory), [(None, None, "no *.csv landing file in the landing directory")]
        )
    batches = [read_landing(spark, path, first_day) for path in files]
    ignored = sorted({c for b in batches for c in b.ignored_columns})
    if len(batches) == 1:
        return batches[0]
    ranked = batches[0].events.withColumn("_file", F.lit(0))
    for rank, batch in enumerate(batches[1:], start=1):
        ranked = ranked.unionByName(batch.events.withColumn("_file", F.lit(rank)))
    latest = Window.partitionBy("order_id").orderBy(F.col("_file").desc())
    events = (
        ranked.withColumn("_rank", F.row_number().over(latest))
        .where(F.col("_rank") == 1)
        .select(*EVENT_COLUMNS, F.lit(False).alias("_bad"))
        .persist()
    )
    try:
        # the pass that combines the files profiles the raw tables
        _, raw_days = profile_raw_tables(events)
    except BaseException:
        events.unpersist()
        raise
    finally:
        for batch in batches:
            batch.unpersist()
    return LandingBatch(
        events=events.drop("_bad"),
        cached=events,
        raw_days=raw_days,
        ignored_columns=ignored,
    )
