"""The driver JVM's class-data archive: built by running the main job, used when it exists."""

import subprocess
import sys
from pathlib import Path

from legiti_assets import install, jvm_archive
from legiti_assets.resources import SparkResource

SHARING = "-XX:SharedArchiveFile="


def test_sessions_map_the_archive_once_it_is_built(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    resource = SparkResource(fork_free_local_fs=False)
    assert SHARING not in resource.session_config()["spark.driver.extraJavaOptions"]
    path = jvm_archive.archive_path(
        SparkResource(class_data_sharing=False, fork_free_local_fs=False).session_config()
    )
    assert path.parent == tmp_path / "legiti-assets"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    options = resource.session_config()["spark.driver.extraJavaOptions"]
    assert options.startswith("-Dlog4j2.configurationFile=")  # kept, the archive's options after
    assert f"{SHARING}{path} {jvm_archive.QUIET}" in options
    off = SparkResource(fork_free_local_fs=False, class_data_sharing=False)
    assert SHARING not in off.session_config()["spark.driver.extraJavaOptions"]
    # another driver class path (the fork-free file system's jar) is another archive
    other = jvm_archive.archive_path({"spark.driver.extraClassPath": "/elsewhere.jar"})
    assert other != path


# A JVM started with the archive maps it (a JVM that cannot would run without it, unseen).
MAPPED = """
import sys
from legiti_assets.resources import SparkResource
spark = SparkResource().spark_session
pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
maps = open(f"/proc/{pid}/maps").read()
print(spark.range(5).count(), sys.argv[1] in maps)
"""


def test_the_built_archive_is_mapped_by_the_driver(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    config = SparkResource(class_data_sharing=False).session_config()
    built = jvm_archive.build(config, orders=200, days=40)
    assert built == jvm_archive.archive_path(config)
    assert built.stat().st_size > 10_000_000  # thousands of classes
    assert not list(built.parent.glob("*.tmp"))
    done = subprocess.run(
        [sys.executable, "-c", MAPPED, str(built)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["5", "True"]
    assert "cds" not in done.stdout + done.stderr  # the JVM said nothing about it


def test_the_sessions_own_sharing_options_win(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    own = {"spark.driver.extraJavaOptions": "-XX:SharedArchiveFile=/mine.jsa"}
    path = jvm_archive.archive_path(own)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    assert jvm_archive.java_options(own) == ""
    assert jvm_archive.java_options({"spark.driver.extraJavaOptions": "-Xshare:off"}) == ""
    assert jvm_archive.java_options({"spark.driver.extraJavaOptions": "-Dx=1"}).startswith(SHARING)


def test_the_training_run_touches_nothing_of_the_users(tmp_path: Path, monkeypatch) -> None:
    """It runs the main job: with the user's online store or cluster it would write to them."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("LEGITI_ONLINE_STORE", "redis://production:6379/0")
    monkeypatch.setenv("LEGITI_SPARK_MASTER", "spark://cluster:7077")
    monkeypatch.setenv("LEGITI_DATA_DIR", "/srv/data")
    seen: dict[str, object] = {}
    run = subprocess.run  # the file system jar's compiler runs for real

    def spark_submit(command: list[str], **kwargs):
        if not any("ArchiveClassesAtExit=" in c for c in command):
            return run(command, **kwargs)
        seen["command"], seen["env"] = command, kwargs["env"]
        option = next(c for c in command if "ArchiveClassesAtExit=" in c)
        Path(option.split("ArchiveClassesAtExit=")[1].split()[0]).write_bytes(b"archive")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(jvm_archive.subprocess, "run", spark_submit)
    config = SparkResource(master="local[*]", class_data_sharing=False).session_config()
    built = jvm_archive.build(config)
    assert built.read_bytes() == b"archive" and not list(built.parent.glob("*.tmp"))
    env = seen["env"]
    assert isinstance(env, dict)
    assert "LEGITI_SPARK_MASTER" not in env and "LEGITI_DATA_DIR" not in env
    assert env["LEGITI_ONLINE_STORE"].startswith("sqlite:///")
    assert env["PYSPARK_DRIVER_PYTHON"] == sys.executable
    assert seen["command"][1:3] == ["--master", "local[*]"]


def test_install_goes_on_without_java(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-java"))
    install.class_data_archive()  # make install's step: no exception
    assert "no JVM class-data archive (Spark starts without it)" in capsys.readouterr().err
    assert not list((tmp_path / "legiti-assets").glob("*.jsa"))
