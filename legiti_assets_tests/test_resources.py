"""The Spark session started ahead of the main job's runs: one session whoever asks first,
stopped at the end, and Ctrl-C still cancels its jobs."""

import subprocess
import sys

# A fresh process: the resource starts its session in the background while another copy (as a
# run's step holds) asks for one; then a start that fails leaves the failure to the run.
BACKGROUND = """
from pyspark.errors import PySparkRuntimeError
from pyspark.sql import SparkSession
from legiti_assets.resources import SparkResource
from legiti_assets.executor import stop_spark
ahead, runs = SparkResource(master="local[1]"), SparkResource(master="local[1]")
thread = ahead.start_in_background()
asked = runs.spark_session
thread.join(120)
started = ahead._session  # what the thread got, not asked again from this one
print(thread.is_alive(), started is asked, asked.range(4).count())
stop_spark()  # from this thread, where the session is not the active one
try:
    SparkSession.active()
    print("still running")
except PySparkRuntimeError:
    print("stopped")
broken = SparkResource(master="no-such-master", start_attempts=1)
thread = broken.start_in_background()
thread.join(120)
try:
    broken.spark_session
except Exception as error:
    print(thread.is_alive(), broken._session is None, "the run sees", type(error).__name__)
"""


def test_a_session_started_in_the_background_is_the_runs_session() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BACKGROUND], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[:2] == ["False True 4", "stopped"]
    assert lines[2].startswith("False True the run sees ")
    assert "Traceback" not in done.stderr  # the background thread's failure is not printed


# Ctrl-C during a long job: the job is cancelled (not left running in the JVM) and the main
# thread gets KeyboardInterrupt.
INTERRUPT = """
import os, signal, threading, time
from legiti_assets.resources import SparkResource
resource = SparkResource(master="local[1]")
resource.start_in_background().join(120)
spark = resource.spark_session
threading.Timer(3, os.kill, (os.getpid(), signal.SIGINT)).start()
began = time.monotonic()
try:
    spark.range(10**12).selectExpr("sum(id * id % 7)").collect()
    print("finished")
except KeyboardInterrupt:
    time.sleep(1)
    tracker = spark.sparkContext.statusTracker()
    print("interrupted", tracker.getActiveJobsIds(), time.monotonic() - began < 60)
"""


def test_ctrl_c_cancels_the_running_job() -> None:
    done = subprocess.run(
        [sys.executable, "-c", INTERRUPT], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["interrupted", "[]", "True"]
