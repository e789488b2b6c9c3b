"""Starting, waiting for and stopping the processes that the cluster and UI tests need.

Every process is started in its own session, so stopping it signals its whole process group
(a `spark-class` or `dagster-webserver` and the JVMs or code servers it starts).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "order_events" / "input.csv"
SAMPLE_START, SAMPLE_END = "2018-05-12", "2020-07-17"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(cmd: list[str], env: Mapping[str, str], log: Path, cwd: Path = REPO) -> subprocess.Popen:
    """`cmd` in a new session, stdout and stderr to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM the process group of `proc`, then SIGKILL what is left of it."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)


def tail(log: Path, lines: int = 40) -> str:
    if not log.exists():
        return f"({log} is missing)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def run_logged(cmd: list[str], env: Mapping[str, str], log: Path, timeout: float) -> None:
    """Run `cmd` to completion within `timeout` seconds; fail with the log's tail otherwise."""
    proc = start(cmd, env, log)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{cmd} timed out after {timeout}s:\n{tail(log)}") from None
    finally:
        stop(proc)
    if code != 0:
        raise AssertionError(f"{cmd} exited with {code}:\n{tail(log)}")


def wait_until(
    ready: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen, log: Path
) -> None:
    """Poll `ready` until true; fail early when `proc` died, or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {proc.returncode}:\n{tail(log)}")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{what}: not ready after {timeout}s:\n{tail(log)}")


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def sample_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A data directory holding a copy of the sample, a fresh DAGSTER_HOME, and their env."""
    data_dir, home = tmp / "data", tmp / "dagster_home"
    (data_dir / "order_events").mkdir(parents=True)
    shutil.copy(SAMPLE, data_dir / "order_events" / "input.csv")
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEGITI_", "SPARK_"))}
    return {**env, "LEGITI_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(home), **extra}


def init_instance(env: Mapping[str, str]) -> None:
    """Create the Dagster instance's storage under env's DAGSTER_HOME before a daemon and a
    webserver start: both creating it at once can leave its schema with two heads."""
    code = "import dagster as dg; dg.DagsterInstance.get().get_runs(limit=1)"
    subprocess.run([sys.executable, "-c", code], env=dict(env), check=True, capture_output=True)


def materialize_sample(env: Mapping[str, str], log: Path, timeout: float = 1200) -> None:
    """The main job (`make awesome-dataset`) on the sample, in a subprocess using `env`."""
    cmd = [sys.executable, "-m", "legiti_assets.run", "--start", SAMPLE_START, "--end", SAMPLE_END]
    run_logged(cmd, env, log, timeout)
