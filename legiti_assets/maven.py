"""Jars from Maven Central that pyspark's wheel lacks: Delta Lake's (and, for s3a://,
hadoop-aws), resolved once per machine by Spark's own Ivy resolution and cached there.

`make install` resolves them; a session that finds them missing resolves them first (a few
seconds, once), so a fresh machine needs nothing else. Nothing is committed or vendored.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import pyspark

# Delta's jars must match its Python package, which butterfree pins (pyproject.toml).
DELTA_VERSION = version("delta-spark")
DELTA = (f"io.delta:delta-spark_2.12:{DELTA_VERSION}", f"io.delta:delta-storage:{DELTA_VERSION}")
# s3a:// for the Hadoop that pyspark ships, and the AWS SDK that Hadoop release was built with.
HADOOP_VERSION = "3.3.4"
S3A = (
    f"org.apache.hadoop:hadoop-aws:{HADOOP_VERSION}",
    "com.amazonaws:aws-java-sdk-bundle:1.12.262",
)
RESOLVE_TIMEOUT_SECONDS = 900
# A download from Maven Central fails now and then mid-file (the AWS SDK bundle is 280 MB);
# Ivy keeps what it finished, so a retry fetches only what is still missing.
RESOLVE_ATTEMPTS = 3
RETRY_PAUSE_SECONDS = 10.0


def ivy_dir() -> Path:
    """Spark's Ivy directory ($LEGITI_IVY_DIR, else ~/.ivy2): resolved jars land in its jars/."""
    return Path(os.environ.get("LEGITI_IVY_DIR") or Path.home() / ".ivy2")


def jar_path(coordinate: str) -> Path:
    """Where Ivy's retrieve step puts a coordinate's jar: jars/<group>_<artifact>-<version>.jar."""
    group, artifact, release = coordinate.split(":")
    return ivy_dir() / "jars" / f"{group}_{artifact}-{release}.jar"


def jars(coordinates: Sequence[str]) -> list[Path]:
    """The jars of `coordinates`, resolved from Maven Central first if any is missing."""
    paths = [jar_path(c) for c in coordinates]
    missing = [c for c, p in zip(coordinates, paths, strict=True) if not p.is_file()]
    if missing:
        resolve(missing)
    return paths


def resolve(coordinates: Sequence[str]) -> None:
    """Resolve `coordinates` (and what they depend on) into the Ivy cache, retrying a failed
    download; raise with the last attempt's output if a jar is still missing."""
    output = ""
    for attempt in range(1, RESOLVE_ATTEMPTS + 1):
        code, output = _submit(coordinates)
        absent = [c for c in coordinates if not jar_path(c).is_file()]
        if not code and not absent:
            return
        if attempt < RESOLVE_ATTEMPTS:
            print(
                f"resolving {', '.join(absent or coordinates)} failed (attempt {attempt} of "
                f"{RESOLVE_ATTEMPTS}); retrying",
                file=sys.stderr,
            )
            time.sleep(RETRY_PAUSE_SECONDS * attempt)
    raise RuntimeError(
        f"resolving {', '.join(absent or coordinates)} from Maven Central into {ivy_dir()} "
        f"failed {RESOLVE_ATTEMPTS} times (is Maven Central reachable?):\n{output}"
    )


def _submit(coordinates: Sequence[str]) -> tuple[int, str]:
    """spark-submit's `--packages` resolution of `coordinates`, running an empty Python script
    (no Spark context starts): its exit code and the tail of its output."""
    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "resolved.py"
        script.write_text("")
        env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_HOME": str(submit.parents[1])}
        done = subprocess.run(
            [
                str(submit),
                *("--packages", ",".join(coordinates)),
                *("--conf", f"spark.jars.ivy={ivy_dir()}"),
                str(script),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=RESOLVE_TIMEOUT_SECONDS,
        )
    return done.returncode, f"{done.stdout[-2000:]}{done.stderr[-4000:]}"
