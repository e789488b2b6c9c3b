"""Crash safety and concurrent runs: a table reads as one committed version, whole, whatever
dies when; `make update` converges after it; a second writer is refused, not interleaved."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from legiti_assets import storage
from legiti_assets.assets import ASSETS
from legiti_assets.update import update
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
    """Each stored day's rows in the table's latest version."""
    found: dict[str, list[tuple]] = {}
    for row in read_table(data_dir / FEATURE_STORE / name):
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


def _corrected_raw(data_dir: Path, corrected: str) -> None:
    """The sample's store, then the corrected landing ingested: user_orders is now stale."""
    _build(data_dir, SAMPLE.read_text())
    write_landing(data_dir, corrected)
    assert _materialize(data_dir, ["order_events", "chargeback_events"], "2020-03-01", RANGE[1])


def test_an_exception_in_a_write_leaves_the_old_version_and_a_rerun_converges(
    tmp_path, old_and_new, monkeypatch
) -> None:
    old, new, corrected = old_and_new
    _corrected_raw(tmp_path, corrected)
    version = storage.current_version(tmp_path / FEATURE_STORE / "user_orders")

    def failing_write(*args, **kwargs):
        raise OSError("disk went away")

    monkeypatch.setattr(storage, "write", failing_write)
    result = _materialize(tmp_path, ["user_orders"], *RANGE, raise_on_error=False)
    assert not result.success
    assert storage.current_version(tmp_path / FEATURE_STORE / "user_orders") == version
    assert _days(tmp_path) == old

    monkeypatch.undo()
    assert _materialize(tmp_path, ["user_orders"], *RANGE).success
    assert _days(tmp_path) == new


def _dagster(data_dir: Path, home: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "LEGITI_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(home)}
    if not home.exists():
        # a DAGSTER_HOME as make prepares it; created before any run, as Dagster's migrations
        # of a new home are not safe against two processes at once
        home.mkdir()
        shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
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


def test_two_concurrent_runs_over_overlapping_days_never_interleave(tmp_path, spark) -> None:
    """Each run commits whole or is refused, saying why; a rerun of a refused one converges."""
    _build(tmp_path, SAMPLE.read_text())
    expected = _days(tmp_path)
    shutil.rmtree(tmp_path / FEATURE_STORE)
    home = tmp_path / "home"
    ranges = ("2020-04-10...2020-06-15", "2020-05-01...2020-07-17")
    runs = [
        _dagster(tmp_path, home, "--select", "user_orders", "--partition-range", days)
        for days in ranges
    ]
    for days, run in zip(ranges, runs, strict=True):
        _, errors = run.communicate(timeout=300)
        if run.returncode != 0:
            assert "another writer committed to this table" in errors, errors[-3000:]
            first, last = days.split("...")
            assert _materialize(tmp_path, ["user_orders"], first, last).success
    assert _days(tmp_path) == expected


# Runs user_orders over a range in a process that SIGKILLs itself (and its JVM) at one step
# of the Delta write: before it, while its data files are written, or right after its commit.
KILL_AT_STEP = """
import os, signal, sys, threading, time
from pathlib import Path
import dagster as dg
from legiti_assets import storage
from legiti_assets.assets import ASSETS
from legiti_assets.executor import build_resources
from legiti_assets.resources import DataDir, SparkResource

data, first, last, step = sys.argv[1:]
real = storage.write

def die():
    os.killpg(0, signal.SIGKILL)

def write(df, table, **kwargs):
    if step == "before":
        die()
    if step == "files":
        known = set(Path(table).glob("*.parquet"))
        def watch():
            while not set(Path(table).glob("*.parquet")) - known:
                time.sleep(0.001)
            die()
        threading.Thread(target=watch, daemon=True).start()
    version = real(df, table, **kwargs)
    die()

storage.write = write
dg.materialize(
    ASSETS, selection=["user_orders"],
    resources=build_resources(DataDir(path=data), SparkResource(master="local[1]")),
    tags={"dagster/asset_partition_range_start": first,
          "dagster/asset_partition_range_end": last},
)
"""


@pytest.mark.parametrize("step", ["before", "files", "commit"])
def test_sigkill_at_each_step_of_a_write_then_update_converges(tmp_path, old_and_new, step) -> None:
    old, new, corrected = old_and_new
    _corrected_raw(tmp_path, corrected)
    run = subprocess.run(
        [sys.executable, "-c", KILL_AT_STEP, str(tmp_path), *RANGE, step],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        start_new_session=True,
    )
    assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]
    # one committed version, whole: the old one, or the new one once the commit is in
    assert _days(tmp_path) == (new if step == "commit" else old)

    update(dg.DagsterInstance.ephemeral(), resources_for(tmp_path))
    # the update computes every day from the first event's on: compare the range's
    assert {d: r for d, r in _days(tmp_path).items() if RANGE[0] <= d <= RANGE[1]} == new
