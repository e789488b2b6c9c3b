"""Hadoop's local file system without a forked `chmod` per file (hadoop/NioRawLocalFileSystem.java).

Without Hadoop's native library (the pyspark wheel has none), every file and directory Spark
creates on file:// costs a `chmod` process forked from the JVM: a range run over 700 days forked
~2,100 of them per table written (11 s where the writes took 1.5 s without them). The class
sets the same permissions through java.nio.

It is compiled once per machine with Janino, the compiler pyspark's own jars include (a JRE is
enough), into a cache directory keyed by its source and the pyspark version, and given to local
Spark sessions by SparkResource. Clusters keep Hadoop's file system: their executors would need
the jar on their class path first.
"""

import hashlib
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pyspark

SOURCE = Path(__file__).with_name("hadoop") / "NioRawLocalFileSystem.java"
CLASS_NAME = "legiti.hadoop.NioRawLocalFileSystem"
JANINO = ("janino-3.1.9.jar", "commons-compiler-3.1.9.jar")


def spark_jars() -> Path:
    return Path(pyspark.__file__).parent / "jars"


def cache_dir() -> Path:
    """Where what is built once per machine is kept: $XDG_CACHE_HOME/legiti-assets."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "legiti-assets"


def java() -> str:
    """The java command: $JAVA_HOME's, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    return str(Path(home) / "bin" / "java") if home else "java"


def jar() -> Path:
    """The jar holding CLASS_NAME, built on first use (about a second) and reused after."""
    digest = hashlib.sha256(SOURCE.read_bytes() + pyspark.__version__.encode()).hexdigest()
    target = cache_dir() / f"nio-local-fs-{digest[:16]}.jar"
    if target.exists():
        return target
    jars = spark_jars()
    with tempfile.TemporaryDirectory() as tmp:
        classes = Path(tmp) / "classes"
        classes.mkdir()
        done = subprocess.run(
            [
                java(),
                "-cp",
                os.pathsep.join(str(jars / name) for name in JANINO),
                "org.codehaus.commons.compiler.samples.CompilerDemo",
                *("-d", str(classes)),
                *("-classpath", os.pathsep.join(str(p) for p in sorted(jars.glob("*.jar")))),
                str(SOURCE),
            ],
            capture_output=True,
            text=True,
        )
        built = sorted(classes.rglob("*.class"))
        if done.returncode or not built:
            raise RuntimeError(f"compiling {SOURCE} failed:\n{done.stdout}{done.stderr}")
        packed = Path(tmp) / "local-fs.jar"
        with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in built:
                archive.write(path, str(path.relative_to(classes)))
        target.parent.mkdir(parents=True, exist_ok=True)
        # another process may build it at the same time: each moves a whole jar into place
        staged = target.with_suffix(f".{os.getpid()}.tmp")
        shutil.copyfile(packed, staged)
        os.replace(staged, target)
    return target


def spark_config() -> dict[str, str]:
    """The settings that make a local session's file:// use the class."""
    return {
        "spark.driver.extraClassPath": str(jar()),
        "spark.hadoop.fs.file.impl": CLASS_NAME,
    }
