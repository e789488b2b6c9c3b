"""Local sessions write through NioRawLocalFileSystem: the same files and permissions as Hadoop's
local file system, without a forked `chmod` per file."""

import os
import stat
import zipfile
from pathlib import Path

from legiti_assets import local_fs


def test_the_jar_is_built_from_the_source_with_a_jre(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    built = local_fs.jar()
    assert built.parent == tmp_path / "legiti-assets"
    with zipfile.ZipFile(built) as archive:
        assert archive.namelist() == ["legiti/hadoop/NioRawLocalFileSystem.class"]
    assert local_fs.jar() == built  # reused, not rebuilt
    assert built.stat().st_mtime_ns == local_fs.jar().stat().st_mtime_ns


def test_local_sessions_write_with_it(spark, tmp_path) -> None:
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    fs = jvm.org.apache.hadoop.fs.FileSystem.get(jvm.java.net.URI("file:///"), conf)
    assert fs.getClass().getName() == local_fs.CLASS_NAME
    out = tmp_path / "table"
    df = spark.range(1000).selectExpr("id", "id % 7 AS day")
    df.repartition("day").write.partitionBy("day").parquet(str(out))
    assert spark.read.parquet(str(out)).count() == 1000
    umask = os.umask(0)
    os.umask(umask)
    days = sorted(out.glob("day=*"))
    assert len(days) == 7
    for day in days:
        assert stat.S_IMODE(day.stat().st_mode) == 0o777 & ~umask
        files = list(day.iterdir())
        assert [f.suffix for f in files] == [".parquet"]  # no .crc beside it
        assert stat.S_IMODE(files[0].stat().st_mode) == 0o666 & ~umask
    assert not list(Path(out).glob(".*.crc"))
