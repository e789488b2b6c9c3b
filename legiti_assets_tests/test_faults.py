"""Crash safety and concurrent runs: stored days stay readable and whole, reruns converge."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from legiti_assets import storage
from legiti_assets.definitions import ASSETS
from legiti_assets_tests.helpers import (
    FEATURE_STORE,
    SAMPLE,
    read_table,
    resources_for,
    write_landing,
)

RANGE = ("2020-04-10", "2020-07-17")
REPO = Path(__file__).resolve().parents[1]


def _materialize(data_dir: Path, selection: list[str], first: str, last: str, **kw):
    return dg.materialize(
        ASSETS,
        selection=selection,
        resources=resources_for(data_dir),
        instance=dg.DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
        },
        **kw,
    )


def _days(data_dir: Path, name: str = "user_orders") -> dict[str, list[tuple]]:
    """Each stored day's rows, read month file by month file."""
    table = data_dir / FEATURE_STORE / name
    found: dict[str, list[tuple]] = {}
    for month in storage.stored_months(table):
        for row in read_table(storage.month_dir(table, month)):
            found.setdefault(str(row[1].date()), []).append(row)
    return found


def _build(data_dir: Path, landing: str) -> None:
    write_landing(data_dir, landing)
    assert _materialize(data_dir, ["order_events", "chargeback_events"], "2020-03-01", RANGE[1])
    assert _materialize(data_dir, ["user_orders"], *RANGE).success


def _without_orders(text: str, ids: tuple[str, ...]) -> str:
    return "".join(line for line in text.splitlines(True) if line.split(",")[0] not in ids)


@pytest.fixture(scope="module")
def old_and_new(tmp_path_factory, spark) -> tuple[dict, dict, str]:
    """The store before (the sample) and after a correction (orders e and h removed)."""
    sample = SAMPLE.read_text()
    corrected = _without_orders(sample, ("e", "h"))
    old_dir, new_dir = tmp_path_factory.mktemp("old"), tmp_path_factory.mktemp("new")
    _build(old_dir, sample)
    _build(new_dir, corrected)
    old, new = _days(old_dir), _days(new_dir)
    assert old != new
    return old, new, corrected


def _assert_each_day_old_or_new(data_dir: Path, old: dict, new: dict) -> None:
    for day, rows in _days(data_dir).items():
        assert rows in (old.get(day), new.get(day)), day
    # a day the correction emptied may be gone already; a day it did not touch is still there
    for day in set(old) & set(new):
        assert _days(data_dir)[day] in (old[day], new[day])


def test_an_exception_mid_range_leaves_whole_days_and_a_rerun_converges(
    tmp_path, old_and_new, monkeypatch
) -> None:
    old, new, corrected = old_and_new
    _build(tmp_path, SAMPLE.read_text())
    write_landing(tmp_path, corrected)
    assert _materialize(tmp_path, ["order_events", "chargeback_events"], "2020-03-01", RANGE[1])

    real_replace, calls = storage.replace_dir, []

    def failing_replace(new_dir, live, *args):
        calls.append(live)
        if len(calls) == 3:  # April and May swapped in, June and July not
            raise OSError("disk went away")
        real_replace(new_dir, live, *args)

    monkeypatch.setattr(storage, "replace_dir", failing_replace)
    result = _materialize(tmp_path, ["user_orders"], *RANGE, raise_on_error=False)
    assert not result.success
    _assert_each_day_old_or_new(tmp_path, old, new)
    assert _days(tmp_path) not in (old, new)  # it really stopped half way

    monkeypatch.setattr(storage, "replace_dir", real_replace)
    assert _materialize(tmp_path, ["user_orders"], *RANGE).success
    assert _days(tmp_path) == new
    assert not (tmp_path / ".staging" / "user_orders").exists()


def _dagster(data_dir: Path, home: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "LEGITI_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(home)}
    if not home.exists():
        # a DAGSTER_HOME as make prepares it; created before any run, as Dagster's migrations
        # of a new home are not safe against two processes at once
        home.mkdir()
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
        subprocess.run(
            [sys.executable, "-m", "dagster", "instance", "migrate"],
            env=env,
            check=True,
            capture_output=True,
        )
    command = [
        sys.executable,
        "-m",
        "dagster",
        "asset",
        "materialize",
        "-m",
        "legiti_assets.definitions",
        *args,
    ]
    return subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_while_writing_leaves_whole_days_and_a_rerun_converges(
    tmp_path, old_and_new
) -> None:
    old, new, corrected = old_and_new
    _build(tmp_path, SAMPLE.read_text())
    write_landing(tmp_path, corrected)
    assert _materialize(tmp_path, ["order_events", "chargeback_events"], "2020-03-01", RANGE[1])

    staging = tmp_path / ".staging" / "user_orders"
    run = _dagster(
        tmp_path,
        tmp_path / "home",
        "--select",
        "user_orders",
        "--partition-range",
        f"{RANGE[0]}...{RANGE[1]}",
    )
    deadline = time.monotonic() + 120
    while not staging.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(run.pid, signal.SIGKILL)  # the JVM too, as a machine crash would
    run.wait(timeout=30)
    assert run.returncode == -signal.SIGKILL, "the run ended before it could be killed"

    _assert_each_day_old_or_new(tmp_path, old, new)
    assert _materialize(tmp_path, ["user_orders"], *RANGE).success
    assert _days(tmp_path) == new
    assert not staging.exists()


def test_two_concurrent_runs_over_overlapping_days_do_not_interleave(tmp_path, spark) -> None:
    _build(tmp_path, SAMPLE.read_text())
    expected = _days(tmp_path)
    shutil.rmtree(tmp_path / FEATURE_STORE)
    home = tmp_path / "home"
    runs = [
        _dagster(tmp_path, home, "--select", "user_orders", "--partition-range", days)
        for days in ("2020-04-10...2020-06-15", "2020-05-01...2020-07-17")
    ]
    for run in runs:
        _, errors = run.communicate(timeout=300)
        assert run.returncode == 0, errors[-3000:]
    assert _days(tmp_path) == expected
    assert not (tmp_path / ".staging" / "user_orders").exists()


KILL_MID_SWAP = """
import os, signal, sys
import dagster as dg
from legiti_assets import storage
from legiti_assets.definitions import ASSETS
from legiti_assets.resources import DataDir, SparkResource
from legiti_assets.definitions import build_resources

real, calls = storage.replace_dir, []
def dying_replace(new, live, *args):
    calls.append(live)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    real(new, live, *args)
storage.replace_dir = dying_replace
dg.materialize(
    ASSETS, selection=["user_orders"],
    resources=build_resources(DataDir(path=sys.argv[1]), SparkResource(master="local[1]")),
    tags={"dagster/asset_partition_range_start": sys.argv[2],
          "dagster/asset_partition_range_end": sys.argv[3]},
)
"""


def test_sigkill_between_two_month_swaps_leaves_whole_days(tmp_path, old_and_new) -> None:
    old, new, corrected = old_and_new
    _build(tmp_path, SAMPLE.read_text())
    write_landing(tmp_path, corrected)
    assert _materialize(tmp_path, ["order_events", "chargeback_events"], "2020-03-01", RANGE[1])

    run = subprocess.run(
        [sys.executable, "-c", KILL_MID_SWAP, str(tmp_path), *RANGE],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        start_new_session=True,
    )
    assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]
    _assert_each_day_old_or_new(tmp_path, old, new)
    assert _days(tmp_path) not in (old, new)

    assert _materialize(tmp_path, ["user_orders"], *RANGE).success
    assert _days(tmp_path) == new
    assert not (tmp_path / ".staging" / "user_orders").exists()
