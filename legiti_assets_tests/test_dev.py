"""`make dev` keeps the store current by itself, quietly, and stops whole.

A backgrounded `make dev` (SIGINT ignored, as a shell's `&` starts it) on the sample landing:
the daemon's landing sensor builds the store, a dropped file reaches the historical and online
stores without a click, its terminal shows no warning (Spark's first UI port taken, as by
another session, included), and SIGTERM to make stops every process it started.
"""

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest

from legiti_assets.catalog import ONLINE_TABLES
from legiti_assets.online import open_online_store
from legiti_assets.resources import SPARK_UI_FIRST_PORT
from legiti_assets.update import UPDATE
from legiti_assets_tests.helpers import SAMPLE, feature_rows, t

REPO = Path(__file__).resolve().parents[1]
HEADER = "order_id,order_timestamp,cpf,chargeback_timestamp\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_processes(sid: int) -> list[str]:
    """The processes of session `sid` (what `make dev` started, however deep)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # fields after the command (in parentheses): state, ppid, pgrp, session
        fields = text.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid:
            found.append(text.split(")", 1)[0].split("(", 1)[1])
    return found


def _updates(instance: dg.DagsterInstance, log: Path) -> int:
    """Successful update runs so far; fail at once if one failed."""
    failed = instance.get_run_records(
        dg.RunsFilter(job_name=UPDATE, statuses=[dg.DagsterRunStatus.FAILURE])
    )
    assert not failed, log.read_text()[-5000:]
    return len(
        instance.get_run_records(
            dg.RunsFilter(job_name=UPDATE, statuses=[dg.DagsterRunStatus.SUCCESS])
        )
    )


def _wait(condition: Callable[[], bool], timeout: float, dev: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert dev.poll() is None, log.read_text()[-5000:]
        assert time.monotonic() < deadline, log.read_text()[-5000:]
        time.sleep(1)


@pytest.fixture
def spark_ui_port_taken() -> Iterator[None]:
    """Spark's first UI port held, as another Spark session on the machine would: by this test,
    or already by someone else."""
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            held.bind(("127.0.0.1", SPARK_UI_FIRST_PORT))
            held.listen()
        except OSError:
            pass  # taken already
        yield


def _warnings(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if "WARN" in line or "Warning" in line]


def _make_dev() -> list[str]:
    """`make dev`, with uv found the way the shell finds it: inside `uv run` (as the tests
    are), `python3` is the project's environment, which has no uv module."""
    uv = shutil.which("uv")
    return ["make", "--no-print-directory", "dev", *([f"UV={uv}"] if uv else ["RUN="])]


def test_a_dropped_file_reaches_both_stores_without_a_click(
    tmp_path, monkeypatch, spark_ui_port_taken
) -> None:
    data, home, log = tmp_path / "data", tmp_path / "home", tmp_path / "dev.log"
    (data / "order_events").mkdir(parents=True)
    shutil.copy(SAMPLE, data / "order_events" / "input.csv")
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # where the pooled event log finds its files
    env = {
        **os.environ,
        "LEGITI_DATA_DIR": str(data),
        "DAGSTER_HOME": str(home),
        "DAGSTER_PORT": str(_free_port()),
    }
    # the instance's storage exists before make dev starts: this test's reads of it would
    # otherwise race make dev to create it ("table alembic_version already exists")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)
    with open(log, "wb") as out:
        dev = subprocess.Popen(
            _make_dev(),
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own session: every process it starts is found
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            # the sensor's first tick sees a landing never handled: the update builds the store
            _wait(lambda: _updates(instance, log) >= 1, 600, dev, log)
            assert ("x", t("2020-07-17"), 2, 2, 2) in feature_rows(data, "user_orders")
            drop = data / "order_events" / "later-2020-07-18.csv"
            drop.write_text(HEADER + "j,2020-07-17 09:00:00,w,\n")
            dropped = time.monotonic()
            _wait(lambda: _updates(instance, log) >= 2, 600, dev, log)
            print(f"drop to updated under make dev: {time.monotonic() - dropped:.1f} s")
        assert ("w", t("2020-07-18"), 1, 1, 1) in feature_rows(data, "user_orders")
        with open_online_store(f"sqlite:///{data / 'online_store.db'}") as store:
            online = store.get_features("user", ["w"], [ONLINE_TABLES["user_orders"]])["w"]
        assert online["cpf_orders__count_over_3_days_rolling_windows"] == 1
        assert online["user_orders__timestamp"] == dt.datetime(2020, 7, 18, tzinfo=dt.UTC)
        # nothing to act on: no warning from Dagster, Python or Spark; the UI's port is said
        assert _warnings(log) == []
        assert "Spark UI (while this process's session runs): http://127.0.0.1:" in log.read_text()
    finally:
        dev.send_signal(signal.SIGTERM)  # to make alone, as `kill %1` would
        dev.wait(timeout=120)
        deadline = time.monotonic() + 30
        while _session_processes(dev.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _session_processes(dev.pid) == [], log.read_text()[-3000:]
