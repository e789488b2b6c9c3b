"""Run a command in its own process group; time it and sample the RSS and CPU time of its
process tree (CPU seconds are less disturbed than wall time by other jobs on a shared machine;
up to 0.2 s of a process's last CPU time may be missed)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")
RESULT_PREFIX = "BENCH-RESULT "


@dataclass
class Measured:
    seconds: float
    peak_rss_bytes: int
    cpu_seconds: float  # user + system of the tree (each process's last sample)
    returncode: int | None  # None when it was stopped at the cap
    result: dict  # what the child printed after RESULT_PREFIX, as JSON
    output: str

    @property
    def capped(self) -> bool:
        return self.returncode is None


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def sample_tree(pid: int, cpu: dict[int, float]) -> int:
    """Resident bytes of `pid` and all its descendants (a JVM child included); records each
    one's user + system CPU seconds in `cpu`.

    A child caught between posix_spawn/vfork and exec still shares its parent's memory and
    shows the parent's statm: it is not counted again. (Without the Hadoop native library the
    JVM spawns a `chmod` for every file it writes, so a 2 GB JVM would often read as 4 GB.)
    """
    tree, total, todo = _children(), 0, [(pid, "")]
    while todo:
        current, parent_statm = todo.pop()
        statm = ""
        with contextlib.suppress(OSError):  # it may have exited
            statm = Path(f"/proc/{current}/statm").read_text()
            if statm != parent_statm:
                total += int(statm.split()[1]) * PAGE
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            cpu[current] = (int(fields[11]) + int(fields[12])) / TICK
        todo += [(child, statm) for child in tree.get(current, [])]
    return total


def run(command: list[str], cap_seconds: float, env: dict[str, str] | None = None) -> Measured:
    """Run `command`, sampling its tree's RSS every 0.2 s; kill the group after `cap_seconds`."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    peak = 0
    cpu: dict[int, float] = {}
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, sample_tree(process.pid, cpu))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        output, _ = process.communicate(timeout=cap_seconds)
        returncode: int | None = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        returncode = None
    finally:
        done.set()
        sampler.join()
    seconds = time.perf_counter() - started
    result: dict = {}
    for line in output.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
    return Measured(seconds, peak, sum(cpu.values()), returncode, result, output)


def report(result: dict) -> None:
    """Called in the child: hand `result` to the parent."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    sys.stdout.flush()


def fresh_data_dir(data_dir: Path, landing) -> dict[str, str]:
    """`data_dir` emptied, holding `landing` (a synthetic table) and a DAGSTER_HOME of its own;
    the environment of a process that runs the platform on it."""
    import shutil

    from legiti_assets import synthetic

    shutil.rmtree(data_dir, ignore_errors=True)
    synthetic.write_landing(landing, data_dir)
    home = data_dir / ".dagster_home"
    home.mkdir()
    config = Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml"
    shutil.copy(config, home / "dagster.yaml")
    return {
        **os.environ,
        "LEGITI_DATA_DIR": str(data_dir),
        "DAGSTER_HOME": str(home),
        "PYTHONWARNINGS": "ignore",
    }
