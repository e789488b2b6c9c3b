"""The Spark resource started ahead of its runs: one session, whoever asks first."""

import subprocess
import sys

# A fresh process: the resource starts its session in the background while another copy (as a
# run's step holds) asks for one, then a start that fails leaves the failure to the run.
BACKGROUND = """
from legiti_assets.resources import SparkResource
ahead, runs = SparkResource(master="local[1]"), SparkResource(master="local[1]")
thread = ahead.start_in_background()
asked = runs.spark_session
thread.join(120)
jvms = {ahead.spark_session.sparkContext._gateway, asked.sparkContext._gateway}
print(thread.is_alive(), ahead.spark_session is asked, len(jvms), asked.range(4).count())
asked.stop()
broken = SparkResource(master="no-such-master", start_attempts=1)
thread = broken.start_in_background()
thread.join(120)
try:
    broken.spark_session
except Exception as error:
    print(thread.is_alive(), "the run sees", type(error).__name__)
"""


def test_a_session_started_in_the_background_is_the_runs_session() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BACKGROUND], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "False True 1 4"
    assert lines[1].startswith("False the run sees ")
    assert "Traceback" not in done.stderr  # the background thread's failure is not printed
