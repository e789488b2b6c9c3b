"""The main job on the sample through a standalone Spark cluster equals the same job in local mode.

Needs `LEGITI_CLUSTER_TESTS=1` (`make test-cluster`); see conftest.py for the cluster.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from legiti_assets import storage
from legiti_assets_tests.cluster.processes import materialize_sample, sample_env, wait_until
from legiti_assets_tests.cluster.standalone import Cluster
from legiti_assets_tests.helpers import TABLES, read_table

EXECUTOR_MB = 768


@pytest.mark.timeout(2700)
def test_cluster_run_equals_local_run(spark_cluster: Cluster, tmp_path: Path) -> None:
    # Spark settings that SparkResource leaves out come from spark-defaults.conf
    conf_dir = tmp_path / "spark_conf"
    conf_dir.mkdir()
    (conf_dir / "spark-defaults.conf").write_text(f"spark.executor.memory {EXECUTOR_MB}m\n")
    cluster_env = sample_env(
        tmp_path / "cluster",
        LEGITI_SPARK_MASTER=spark_cluster.url,
        # the executors' Python is the driver's: the same venv, on the same machine
        PYSPARK_PYTHON=sys.executable,
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_CONF_DIR=str(conf_dir),
    )
    started = time.monotonic()
    materialize_sample(cluster_env, tmp_path / "cluster.log")
    print(f"\nmain job on the cluster: {time.monotonic() - started:.0f}s")

    # the run really went through the cluster: the master saw it finish, its executor ran tasks
    def finished() -> list[dict]:
        apps = spark_cluster.state()["completedapps"]
        return [app for app in apps if app["name"] == "legiti-assets"]

    # the master moves the app to completedapps when its driver goes, a moment after the exit
    wait_until(lambda: bool(finished()), 60, "the cluster run's app", *spark_cluster.master)
    [app] = finished()
    assert app["state"] == "FINISHED", app
    assert app["memoryperexecutor"] == EXECUTOR_MB, app
    executor_logs = list(spark_cluster.work_dir.glob(f"{app['id']}/*/stderr"))
    assert executor_logs, f"no executor of {app['id']} under {spark_cluster.work_dir}"
    assert "Running task" in executor_logs[0].read_text(errors="replace")

    local_env = sample_env(tmp_path / "local", LEGITI_SPARK_MASTER="local[2]")
    started = time.monotonic()
    materialize_sample(local_env, tmp_path / "local.log")
    print(f"main job in local mode: {time.monotonic() - started:.0f}s")

    for name in TABLES:
        on_cluster = Path(cluster_env["LEGITI_DATA_DIR"]) / name
        local = Path(local_env["LEGITI_DATA_DIR"]) / name
        assert local.is_dir(), f"the local run wrote no {name}"
        rows = read_table(local)
        assert rows, f"the local run's {name} is empty"
        assert read_table(on_cluster) == rows, name
        assert storage.recorded(on_cluster) == storage.recorded(local), name
