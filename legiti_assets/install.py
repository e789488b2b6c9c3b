"""`make install`'s steps after the Python packages, once per machine: Delta Lake's jars from
Maven Central into Ivy's cache (`maven.py`), then the Spark driver JVM's class-data archive
(`jvm_archive.py`), which must see those jars on the class path it is built for."""

import argparse
import sys
import time

from legiti_assets import jvm_archive, maven
from legiti_assets.resources import SparkResource


def class_data_archive(force: bool = False) -> None:
    """Build the archive for a local session unless it exists (or `force`); only a speed-up, so
    a failure says why and goes on without it."""
    began = time.perf_counter()
    try:
        # a local session: the archive is the driver's, whatever master runs the work
        config = SparkResource(master="local[*]", class_data_sharing=False).session_config()
        path = jvm_archive.archive_path(config)
        if path.is_file() and not force:
            print(f"JVM class-data archive: {path}")
            return
        jvm_archive.build(config)
    except Exception as error:
        print(f"no JVM class-data archive (Spark starts without it): {error}", file=sys.stderr)
        return
    print(f"JVM class-data archive: {path} ({time.perf_counter() - began:.0f} s to build)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rebuild-archive", action="store_true", help="rebuild the JVM archive even if it exists"
    )
    args = parser.parse_args(argv)
    for path in maven.jars(maven.DELTA):
        print(f"Delta Lake jar: {path}")
    class_data_archive(force=args.rebuild_archive)


if __name__ == "__main__":
    main()
