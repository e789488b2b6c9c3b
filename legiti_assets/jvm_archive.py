"""A class-data sharing archive for the Spark driver's JVM: its cold start, paid once per machine.

Every process that starts Spark (the main job, a daily run, an update, the UI's runs) loads
and verifies the same thousands of classes from pyspark's jars before its first job. Java 17 can
map them from an archive instead (AppCDS, `-XX:SharedArchiveFile`): the sample's main job
took ~3 s less with it (README, "Benchmarks").

`python -m legiti_assets.install` (run by `make install`) builds it: the main job on a
small synthetic landing, in a temporary directory, under `spark-submit` with
`-XX:ArchiveClassesAtExit`, so the archive holds the classes a real run loads. `spark-submit`
returns once the JVM has exited, that is once the archive is written; it is then moved into
place whole; the run touches nothing of the user's (no `LEGITI_*` setting reaches it).
SparkResource uses it when it exists for the same Java and class path (the archive's name is a
digest of the files a JVM checks before mapping it). A JVM that cannot use an archive runs without
it: the archive is only ever a speed-up.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyspark

from legiti_assets import local_fs

# The classes a JVM maps from the archive; its own messages about it (a stale archive is
# ignored, with a warning on stdout otherwise) stay out of the terminal.
QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off -Xlog:class+path=off"
TRAINING_DAYS = 60  # enough for every window (30 days) and the lookback
TRAINING_ORDERS = 2_000
BUILD_TIMEOUT_SECONDS = 900


def _java() -> Path:
    found = shutil.which(local_fs.java())
    return Path(os.path.realpath(found)) if found else Path(local_fs.java())


def _class_path(config: dict[str, str]) -> list[Path]:
    jars = sorted(local_fs.spark_jars().glob("*.jar"))
    extra = [Path(p) for p in config.get("spark.driver.extraClassPath", "").split(os.pathsep) if p]
    return [*jars, *extra]


def archive_path(config: dict[str, str]) -> Path:
    """Where the archive for a session of `config` is (or would be): named by what a JVM checks
    before mapping it, the Java binary and each class path jar's path, size and time."""
    files = [_java(), *_class_path(config)]
    identity = [pyspark.__version__]
    for path in files:
        try:
            stat = path.stat()
            identity.append(f"{path}:{stat.st_size}:{stat.st_mtime_ns}")
        except OSError:
            identity.append(f"{path}:missing")
    digest = hashlib.sha256("\n".join(identity).encode()).hexdigest()[:16]
    return local_fs.cache_dir() / f"spark-driver-cds-{digest}.jsa"


def java_options(config: dict[str, str]) -> str:
    """The driver's JVM options that map the archive, or "" when there is none yet or the
    session's own options already choose how classes are shared."""
    own = config.get("spark.driver.extraJavaOptions", "")
    if "SharedArchiveFile" in own or "-Xshare" in own:
        return ""
    path = archive_path(config)
    return f"-XX:SharedArchiveFile={path} {QUIET}" if path.is_file() else ""


TRAINING_SCRIPT = """
import os, sys
from pathlib import Path
from legiti_assets import run, synthetic
work = Path(sys.argv[1])
size = synthetic.Size(int(sys.argv[2]), int(sys.argv[3]))
synthetic.write_landing(synthetic.generate(size), work / "data")
os.environ.update(LEGITI_DATA_DIR=str(work / "data"), DAGSTER_HOME=str(work / "home"))
start, end = synthetic.day_range(size)
run.main(["--start", str(start), "--end", str(end)])
"""


def build(config: dict[str, str], orders: int = TRAINING_ORDERS, days: int = TRAINING_DAYS) -> Path:
    """Build the archive for sessions of `config` (replacing any) and return its path."""
    target = archive_path(config)
    target.parent.mkdir(parents=True, exist_ok=True)
    # the run under spark-submit imports pyspark from Spark's zip, beside no jars: the file
    # system's jar, which its session settings name, must be built beforehand
    local_fs.jar()
    staged = target.with_suffix(f".{os.getpid()}.tmp")
    options = config.get("spark.driver.extraJavaOptions", "")
    settings = {
        **config,
        "spark.driver.extraJavaOptions": f"{options} -XX:ArchiveClassesAtExit={staged}".strip(),
    }
    submit = [str(Path(pyspark.__file__).parent / "bin" / "spark-submit")]
    submit += ["--master", settings.pop("spark.master", "local[*]")]
    for key, value in settings.items():
        submit += ["--conf", f"{key}={value}"]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            (work / "home").mkdir()
            shutil.copy(
                Path(__file__).parents[1] / "deploy" / "dagster.yaml",
                work / "home" / "dagster.yaml",
            )
            script = work / "train.py"
            script.write_text(TRAINING_SCRIPT)
            # the training run touches nothing of the user's: no configured online store,
            # cluster or data directory, only files under `work`
            env = {k: v for k, v in os.environ.items() if not k.startswith("LEGITI_")}
            env.update(
                PYSPARK_PYTHON=sys.executable,
                PYSPARK_DRIVER_PYTHON=sys.executable,
                SPARK_LOCAL_IP="127.0.0.1",
                LEGITI_ONLINE_STORE=f"sqlite:///{work / 'online_store.db'}",
            )
            done = subprocess.run(
                [*submit, str(script), str(work), str(orders), str(days)],
                env=env,
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_SECONDS,
            )
        if done.returncode or not staged.is_file():
            raise RuntimeError(
                f"building {target} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
            )
        os.replace(staged, target)
    finally:
        staged.unlink(missing_ok=True)
    return target
