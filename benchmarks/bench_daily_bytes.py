"""`make bench-daily-bytes`: the bytes one daily run writes to each Delta table, against what
the month-file layout the store used before rewrote for the same run.

    make bench-daily-bytes SIZE=10m

In `benchmarks/data/daily-bytes-<size>/`, each a fresh process: the main job (`python -m
legiti_assets.run`, as `make awesome-dataset`) over the synthetic landing's days builds the
store; then one run of the `compute_features` job for the next day's partition, as the daily
schedule launches it (feature sets, online store, training sets).

- Delta: per table, the data files the run's commits add (the `size` of their add actions),
  plus the log files it wrote (commit JSON, checksum files, any checkpoint).
- Month files: a one-day write rewrote the whole file of the month the day falls in. Estimated
  as the size of the current version's files whose timestamps ([min, max] statistics) fall in
  that month: the same Parquet data. A file spanning months counts for the share of its span
  inside the month. Plus the table's manifest of every day's record (`_materialized_days.json`,
  rewritten whole by each write; Delta carries the same records in each commit). A table
  without days (a training set) was rewritten whole either way.

Neither counts the online store's SQLite writes or Dagster's event log. Prints a table and
replaces the section of `benchmarks/RESULTS.md` between `MARKERS` (`make bench` keeps it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from benchmarks import measure
from legiti_assets.storage import LOG_DIR

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "RESULTS.md"
MARKERS = ("<!-- bench-daily-bytes -->", "<!-- /bench-daily-bytes -->")


# A log file's name, size and modification time: what tells a file the run wrote or rewrote.
LogFiles = dict[str, tuple[int, int]]


@dataclass(frozen=True)
class Written:
    """What one table's new commits wrote."""

    table: str
    commits: int
    files_added: int
    data_bytes: int
    log_bytes: int
    month_file_bytes: int
    manifest_bytes: int  # the month layout's `_materialized_days.json`, rewritten whole
    dated: bool  # a daily table (else rewritten whole in both layouts)

    @property
    def delta_bytes(self) -> int:
        return self.data_bytes + self.log_bytes

    @property
    def month_bytes(self) -> int:
        return self.month_file_bytes + self.manifest_bytes


# --- the Delta tables --------------------------------------------------------------------------


def delta_tables(root: Path) -> list[Path]:
    return sorted(log.parent for log in root.rglob(LOG_DIR) if log.is_dir())


def log_files(table: Path) -> LogFiles:
    found = {}
    for path in (table / LOG_DIR).iterdir():
        if path.is_file():  # not `_commits/`, empty unless commits are coordinated
            stat = path.stat()
            found[path.name] = (stat.st_size, stat.st_mtime_ns)
    return found


def dated_by(root: Path) -> dict[Path, str]:
    """Each daily table under `root` with the column that dates its rows."""
    from legiti_assets import layout
    from legiti_assets.assets.raw import DATED_BY
    from legiti_assets.catalog import SPECS
    from legiti_assets.engine import TIMESTAMP

    found = {root / layout.raw_table(name): column for name, column in DATED_BY.items()}
    for name, spec in SPECS.items():
        found[root / layout.feature_set_table(spec.entity, name)] = TIMESTAMP
    return found


def month_bytes(table: Path, column: str, day: dt.date) -> int:
    """The bytes of the current version's files holding `day`'s month (by their [min, max]
    statistics of `column`; a file spanning months for the share of its span in this one)."""

    start = dt.datetime(day.year, day.month, 1, tzinfo=dt.UTC)
    end = dt.datetime(day.year + day.month // 12, day.month % 12 + 1, 1, tzinfo=dt.UTC)
    actions = _add_actions(table).to_pylist()
    total = 0.0
    for action in actions:
        low, high = action.get(f"min.{column}"), action.get(f"max.{column}")
        if low is None or high is None:
            continue  # a file of nulls only (not dated) or without statistics
        low, high = _utc(low), _utc(high)
        if high < start or low >= end:
            continue
        span = (high - low).total_seconds()
        inside = (min(high, end) - max(low, start)).total_seconds()
        total += action["size_bytes"] * (1.0 if span == 0 else min(1.0, inside / span))
    return round(total)


def _add_actions(table: Path) -> pa.Table:
    """The current version's files, one row each, with their statistics flattened."""
    from legiti_assets import storage

    # deltalake hands an Arrow table of its own (arro3): taken as pyarrow's, without a copy
    return pa.table(storage.log(table).get_add_actions(flatten=True))


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def written(
    table: Path, name: str, before: int | None, logs: LogFiles, day: dt.date, column: str | None
) -> Written:
    """What the commits after version `before` (None: no table yet) added to `table`."""
    from legiti_assets import storage

    latest = storage.current_version(table)
    assert latest is not None
    first = 0 if before is None else before + 1
    files = data = 0
    for version in range(first, latest + 1):
        for line in (table / LOG_DIR / f"{version:020d}.json").read_text().splitlines():
            action = json.loads(line) if line.strip() else {}
            if "add" in action:
                files += 1
                data += int(action["add"]["size"])
    new_logs = sum(
        size for n, (size, mtime) in log_files(table).items() if logs.get(n) != (size, mtime)
    )
    if column is not None:
        month = month_bytes(table, column, day)
    else:  # rewritten whole in both layouts: what this version's files hold
        month = int(sum(_add_actions(table).column("size_bytes").to_pylist()))
    # the month layout kept the same records of every day in a manifest beside the files,
    # rewritten whole by every write (json.dumps of the same dict: the same bytes)
    records = storage.recorded(table)
    manifest = len(storage.encode_records(records).encode()) if records else 0
    return Written(
        name, latest + 1 - first, files, data, new_logs, month, manifest, column is not None
    )


# --- the runs ----------------------------------------------------------------------------------


def daily_run(day: dt.date) -> None:
    """In the child: one run of `compute_features` for `day`'s partition, as the daily schedule
    launches it (the data directory and Dagster instance from the environment)."""
    import dagster as dg

    from legiti_assets.catalog import SPECS, TRAINING, online_name
    from legiti_assets.executor import build_resources, run_step
    from legiti_assets.planner import Step
    from legiti_assets.resources import DataDir, SparkResource

    assets = (*SPECS, *(online_name(n) for n in SPECS), *TRAINING)
    resources = build_resources(DataDir(), SparkResource())
    with dg.DagsterInstance.get() as instance:
        run_step(Step(assets, day, day, ("benchmark",)), instance, resources)


def _timed(argv: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(argv)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - began


def measure_day(size_name: str, seed: int) -> tuple[dict, list[Written]]:
    from legiti_assets import storage, synthetic

    size = synthetic.SIZES[size_name]
    start, end = synthetic.day_range(size)
    day = end + dt.timedelta(days=1)
    data_dir = HERE / "data" / f"daily-bytes-{size_name}"
    env = measure.fresh_data_dir(data_dir, synthetic.generate(size, seed))
    python = sys.executable
    build = _timed(
        [python, "-m", "legiti_assets.run", "--start", str(start), "--end", str(end)], env
    )
    before = {t: (storage.current_version(t), log_files(t)) for t in delta_tables(data_dir)}
    load = os.getloadavg()[0]
    seconds = _timed([python, "-m", "benchmarks.bench_daily_bytes", "--day", str(day)], env)
    columns = dated_by(data_dir)
    rows = []
    for table in delta_tables(data_dir):
        version, logs = before.get(table, (None, {}))
        if storage.current_version(table) != version:
            name = str(table.relative_to(data_dir))
            rows.append(written(table, name, version, logs, day, columns.get(table)))
    facts = {
        "size": size_name,
        "orders": size.orders,
        "start": str(start),
        "end": str(end),
        "day": str(day),
        "build_seconds": build,
        "daily_seconds": seconds,
        "load": f"{load:.1f}",
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    return facts, rows


# --- the report --------------------------------------------------------------------------------


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.2f} GiB"


def _ratio(month: int, delta: int) -> str:
    return f"{month / delta:,.1f}x" if delta else "-"


def markdown(rows: list[Written]) -> str:
    header = [
        "table",
        "commits",
        "files added",
        "data bytes",
        "log bytes",
        "Delta, total",
        "month file (est.)",
        "manifest",
        "month layout, total",
        "month layout / Delta",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for w in rows:
        cells = [
            w.table if w.dated else f"{w.table} (whole table)",
            str(w.commits),
            str(w.files_added),
            _size(w.data_bytes),
            _size(w.log_bytes),
            _size(w.delta_bytes),
            _size(w.month_file_bytes),
            _size(w.manifest_bytes),
            _size(w.month_bytes),
            _ratio(w.month_bytes, w.delta_bytes),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    delta = sum(w.delta_bytes for w in rows)
    month = sum(w.month_bytes for w in rows)
    total = ["**all**", *[""] * 4, _size(delta), "", "", _size(month), _ratio(month, delta)]
    lines.append("| " + " | ".join(total) + " |")
    return "\n".join(lines)


def section(facts: dict, rows: list[Written]) -> str:
    daily = [w for w in rows if w.dated]
    delta = sum(w.delta_bytes for w in daily)
    month = sum(w.month_bytes for w in daily)
    return "\n".join(
        [
            MARKERS[0],
            "## Bytes one daily run writes (`make bench-daily-bytes`)",
            "",
            f"{facts['size']} ({facts['orders']:,} orders, {facts['start']}..{facts['end']}), "
            f"the daily run of {facts['day']} (`compute_features`, one partition: "
            f"{facts['daily_seconds']:.1f} s whole process, load {facts['load']}), measured "
            f"{facts['measured']}. Daily tables: {_size(delta)} written as Delta commits "
            f"against {_size(month)} the month layout rewrote ({_ratio(month, delta)}).",
            "",
            markdown(rows),
            "",
            "- *data bytes*: the files the run's commits add; *log bytes*: the log files it "
            "wrote (commit JSON, whose userMetadata holds every day's record, checksums, any "
            "checkpoint). *month file (est.)*: a one-day write rewrote its month's file; "
            "estimated as the current version's files whose [min, max] timestamps fall in "
            "that month (a file spanning months for its share). *manifest*: the month "
            "layout's `_materialized_days.json`, the same records, rewritten whole by every "
            "write. A training set is rewritten whole in both layouts. The online store's "
            "SQLite writes and Dagster's event log are not counted.",
            MARKERS[1],
            "",
        ]
    )


def kept_section(text: str, markers: tuple[str, str] = MARKERS) -> str:
    """The section between `markers` in `text` with a trailing newline, or ''."""
    begin, end = text.find(markers[0]), text.find(markers[1])
    if begin < 0 or end < begin:
        return ""
    return text[begin : end + len(markers[1])] + "\n"


def replace_section(text: str, new: str) -> str:
    """`text` with its section between `MARKERS` replaced by `new` (appended if it has none)."""
    old = kept_section(text)
    if old:
        return text.replace(old, new)
    return text + ("\n" if text and not text.endswith("\n\n") else "") + new


def main(argv: list[str] | None = None) -> None:
    from legiti_assets import synthetic

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(synthetic.SIZES), default="10k")
    parser.add_argument("--seed", type=int, default=synthetic.DEFAULT_SEED)
    parser.add_argument("--day", type=dt.date.fromisoformat, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.day is not None:
        daily_run(args.day)
        return
    facts, rows = measure_day(args.size, args.seed)
    print(
        f"{args.size}: store built in {facts['build_seconds']:.1f} s; the daily run of "
        f"{facts['day']} in {facts['daily_seconds']:.1f} s (load {facts['load']})"
    )
    print(markdown(rows))
    RESULTS.write_text(
        replace_section(RESULTS.read_text() if RESULTS.exists() else "", section(facts, rows))
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
