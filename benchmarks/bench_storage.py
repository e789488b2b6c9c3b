"""`make bench-storage`: the main job (`make awesome-dataset`, whole process) with the Dagster
instance in each storage: the pooled SQLite event log of deploy/dagster.yaml, Dagster's stock
SQLite, and PostgreSQL (deploy/dagster-postgres.yaml; the target starts a throwaway server with
scripts/with-postgres), on the 9-row sample and on synthetic sizes.

    make bench-storage SIZES=sample,1m

Each measurement is a fresh data directory and a fresh instance (a new database for
PostgreSQL), run one after another; the 1-minute load average is shown beside each figure.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

from legiti_assets import synthetic

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SAMPLE = ROOT / "data" / "order_events" / "input.csv"
SAMPLE_RANGE = ("2018-05-12", "2020-07-17")
STORAGES = ("pooled SQLite", "stock SQLite", "PostgreSQL")


def _instance_config(storage: str) -> str:
    if storage == "PostgreSQL":
        return (ROOT / "deploy" / "dagster-postgres.yaml").read_text()
    config = (ROOT / "deploy" / "dagster.yaml").read_text()
    if storage == "stock SQLite":
        head, tail = config.split("event_log_storage:", 1)
        config = head + "\n".join(tail.split("\n")[3:])  # the block's three lines
    return config


def _database(server: str) -> str:
    """A new database on the server, as a dagster-postgres URL."""
    import psycopg2

    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(server)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    admin.close()
    return server.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg2://") + f"/{name}"


def _landing(size: str, seed: int) -> tuple[Path, tuple[str, str]]:
    """The landing directory of `size` (generated once) and its day range."""
    if size == "sample":
        return SAMPLE.parent, SAMPLE_RANGE
    spec = synthetic.SIZES[size]
    first, last = synthetic.day_range(spec)
    source = HERE / "data" / f"storage-{size}"
    if not (source / "order_events").exists():
        synthetic.write_landing(synthetic.generate(spec, seed), source)
    return source / "order_events", (str(first), str(last))


def measure(size: str, storage: str, seed: int, work: Path) -> tuple[float, float, int]:
    """Seconds of the whole main-job process, the load before it, and its runs' event count."""
    landing, (start, end) = _landing(size, seed)
    data, home = work / "data", work / "home"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(landing, data / "order_events")
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(_instance_config(storage))
    env = {**os.environ, "LEGITI_DATA_DIR": str(data), "DAGSTER_HOME": str(home)}
    if storage == "PostgreSQL":
        server = os.environ.get("LEGITI_TEST_POSTGRES_URL")
        if not server:
            raise SystemExit("PostgreSQL: run under scripts/with-postgres (make bench-storage)")
        env["DAGSTER_POSTGRES_URL"] = _database(server)
    load = os.getloadavg()[0]
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "legiti_assets.run", "--start", start, "--end", end],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - began
    if done.returncode:
        raise SystemExit(f"{size} on {storage} failed:\n{done.stderr[-3000:]}")
    count = subprocess.run(
        [
            sys.executable,
            "-c",
            "import dagster as dg\n"
            "with dg.DagsterInstance.get() as i:\n"
            "    print(sum(len(i.all_logs(r.run_id)) for r in i.get_runs()))",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return seconds, load, int(count.stdout.split()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="sample,1m")
    parser.add_argument("--storages", default=",".join(STORAGES))
    parser.add_argument("--seed", type=int, default=synthetic.DEFAULT_SEED)
    args = parser.parse_args(argv)
    work = HERE / "data" / "storage-run"
    print("| size | storage | main job, whole process (s) | events | load (1 min) |")
    print("|---|---|---|---|---|")
    for size in args.sizes.split(","):
        for storage in args.storages.split(","):
            seconds, load, events = measure(size, storage, args.seed, work)
            print(f"| {size} | {storage} | {seconds:.1f} | {events:,} | {load:.1f} |", flush=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
