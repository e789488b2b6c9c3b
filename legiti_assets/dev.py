"""`make dev`: the Dagster UI and daemon (schedules, sensors, run queue), stopped as a whole.

`dagster dev` starts a webserver, a daemon, code servers, and each run in a process of its own
(with its Spark JVM). Sent to it alone, SIGTERM leaves those children running, and a shell
starts a backgrounded command with SIGINT ignored. So this starts it in a process group of its
own, and on SIGINT, SIGTERM or SIGHUP interrupts the group, waits for it to stop, and kills
what is left after `--grace` seconds.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from types import FrameType

import dagster as dg

from legiti_assets.partitions import RANGE_RUN_ENV

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# `dg dev` (dagster-dg-cli) supersedes `dagster dev`, which works the same and says so
QUIET_WARNINGS = ("ignore:Function `dev_command` is superseded",)


def _group_alive(leader: subprocess.Popen) -> bool:
    leader.poll()  # reaps the leader once it exits: a zombie still counts as in the group
    try:
        os.killpg(leader.pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_group(leader: subprocess.Popen, grace: float) -> None:
    """SIGINT to every process of the leader's group (Dagster's own shutdown: runs are marked
    failed, not left started), then SIGTERM, then SIGKILL, until none is left."""
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if not _group_alive(leader):
            return
        os.killpg(leader.pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _group_alive(leader):
                return
            time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", default="3000")
    parser.add_argument("--workspace", default="workspace.yaml")
    parser.add_argument("--grace", type=float, default=20.0, help="seconds to stop cleanly")
    args = parser.parse_args(argv)
    # the webserver, the daemon and the code server each open the instance at once: on a fresh
    # $DAGSTER_HOME they would all create its storage, and may leave its schema with two heads
    if os.environ.get("DAGSTER_HOME"):  # without it, `dagster dev` uses a temporary one
        with dg.DagsterInstance.get() as instance:
            instance.get_runs(limit=1)
    command = [
        *(sys.executable, "-m", "dagster", "dev"),
        *("-h", args.host, "-p", str(args.port), "-w", args.workspace),
    ]
    # the group's processes get SIGINT as a terminal's Ctrl-C would send it: by default,
    # even if this process was started with it ignored
    child = subprocess.Popen(
        command,
        env={**os.environ, **RANGE_RUN_ENV, "PYTHONWARNINGS": ",".join(QUIET_WARNINGS)},
        process_group=0,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    stopping: list[int] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    for sig in STOP_SIGNALS:
        signal.signal(sig, stop)
    while child.poll() is None and not stopping:
        time.sleep(0.2)
    if stopping:
        print(f"make dev: stopping Dagster ({signal.Signals(stopping[0]).name})", flush=True)
    stop_group(child, args.grace)
    child.wait()
    return 0 if stopping else child.returncode


if __name__ == "__main__":
    sys.exit(main())
