"""A standalone Spark master and one worker on 127.0.0.1, started from the pyspark wheel."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyspark

from legiti_assets_tests.cluster.processes import free_port, get_json, start, stop, wait_until

SPARK_HOME = Path(pyspark.__file__).resolve().parent


@dataclass(frozen=True)
class Cluster:
    url: str  # spark://127.0.0.1:<port>
    webui: str  # http://127.0.0.1:<port>, the master's UI; /json is its state
    work_dir: Path  # the worker's application directories (executor logs)
    master: tuple[subprocess.Popen, Path]  # the master's process and log

    def state(self) -> dict:
        return get_json(f"{self.webui}/json")


@contextlib.contextmanager
def standalone_cluster(tmp: Path) -> Iterator[Cluster]:
    """A master and one worker (1 core, 1g) until the block exits, logs and work dir in `tmp`."""
    spark_class = SPARK_HOME / "bin" / "spark-class"
    if not os.access(spark_class, os.X_OK):
        for script in (SPARK_HOME / "bin").iterdir():
            script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    env = {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(tmp / "logs"),
    }
    port, master_ui, worker_ui = free_port(), free_port(), free_port()
    url, work_dir = f"spark://127.0.0.1:{port}", tmp / "work"
    master_log, worker_log = tmp / "master.log", tmp / "worker.log"
    master_cmd = [str(spark_class), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1"]
    master_cmd += ["--port", str(port), "--webui-port", str(master_ui)]
    worker_cmd = [str(spark_class), "org.apache.spark.deploy.worker.Worker", url]
    worker_cmd += ["--host", "127.0.0.1", "--cores", "1", "--memory", "1g"]
    worker_cmd += ["--webui-port", str(worker_ui), "--work-dir", str(work_dir)]
    master = start(master_cmd, env, master_log)
    cluster = Cluster(url, f"http://127.0.0.1:{master_ui}", work_dir, (master, master_log))
    processes = [master]
    try:
        wait_until(lambda: cluster.state()["status"] == "ALIVE", 120, "master", master, master_log)
        worker = start(worker_cmd, env, worker_log)
        processes.append(worker)
        wait_until(lambda: cluster.state()["aliveworkers"] >= 1, 120, "worker", worker, worker_log)
        yield cluster
    finally:
        for proc in reversed(processes):
            stop(proc)
