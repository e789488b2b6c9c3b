"""Resources: where the data lives and the Spark session every asset of a run shares."""

import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
from pydantic import Field
from pyspark.sql import SparkSession

from legiti_assets import layout
from legiti_assets.online_store import OnlineStore, open_online_store

DEFAULT_DATA_DIR = "data"


class DataDir(dg.ConfigurableResource):
    """The one directory holding the landing file and every output.

    `path=None` means `$LEGITI_DATA_DIR`, else `data`. It is read when a run uses it, not at
    import: `dg.EnvVar` has no default, so an unset variable would fail every run.
    """

    path: str | None = Field(default=None, description="Data directory; $LEGITI_DATA_DIR.")

    @property
    def root(self) -> Path:
        return Path(self.path or os.environ.get("LEGITI_DATA_DIR") or DEFAULT_DATA_DIR).absolute()

    def resolve(self, relative: str) -> Path:
        """`relative` under the root; refuses anything that would escape it."""
        root = self.root.resolve()
        target = (root / relative).resolve()
        if not target.is_relative_to(root):
            raise ValueError(f"{relative!r} escapes the data directory {root}")
        return target

    @property
    def landing_dir(self) -> Path:
        """Every `*.csv` here is part of the landing, applied in name order."""
        return self.resolve(layout.LANDING_DIR)


class SparkResource(dg.ConfigurableResource):
    """A Spark session, started once per run process and shared by its steps.

    `master=None` means `$LEGITI_SPARK_MASTER`, else `local[*]`: `spark://host:7077`,
    `k8s://...` or `yarn` run the same assets on a cluster.
    """

    master: str | None = Field(default=None, description="Spark master; $LEGITI_SPARK_MASTER.")
    app_name: str = "legiti-assets"
    shuffle_partitions: int = Field(
        default=8, description="spark.sql.shuffle.partitions: small by default, data is small."
    )
    driver_memory: str = "2g"
    start_attempts: int = 3
    conf: dict[str, str] = Field(
        default_factory=dict, description="Extra Spark settings, e.g. executor memory."
    )

    def resolved_master(self) -> str:
        return self.master or os.environ.get("LEGITI_SPARK_MASTER") or "local[*]"

    def get_session(self) -> SparkSession:
        master = self.resolved_master()
        builder = (
            SparkSession.builder.master(master)
            .appName(self.app_name)
            .config("spark.sql.shuffle.partitions", str(self.shuffle_partitions))
            .config("spark.driver.memory", self.driver_memory)
            .config("spark.ui.showConsoleProgress", "false")
            # Parquet timestamps stay instants whatever the reader's time zone
            .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
            .config("spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
            # inputs are lists of day directories on a POSIX file system: the driver lists
            # 1,000 of them in milliseconds, while the default (a Spark job when there are more
            # than 32) took 3-5 s per input with a task per directory
            .config("spark.sql.sources.parallelPartitionDiscovery.threshold", "100000")
        )
        if master.startswith("local"):
            # nothing but this process needs the driver or its UI: keep them on loopback
            builder = builder.config("spark.driver.bindAddress", "127.0.0.1").config(
                "spark.driver.host", "127.0.0.1"
            )
        for key, value in self.conf.items():
            builder = builder.config(key, value)
        # days are UTC days everywhere (partitions, windows, Parquet timestamps): not a setting
        builder = builder.config("spark.sql.session.timeZone", "UTC")
        # starting the JVM or reaching a cluster can fail transiently (a port taken, a master
        # still starting): retry that, not the work itself
        for attempt in range(self.start_attempts):
            try:
                session = builder.getOrCreate()
                break
            except Exception:
                if attempt + 1 == self.start_attempts:
                    raise
                time.sleep(2**attempt)
        session.sparkContext.setLogLevel("ERROR")
        return session


class OnlineStoreResource(dg.ConfigurableResource):
    """The online feature store: latest state per key, for the model service.

    `url=None` means `$LEGITI_ONLINE_STORE`, else SQLite at `<data>/online_store.db`;
    `redis://host:port/db` selects Redis.
    """

    data: DataDir
    url: str | None = Field(default=None, description="Store URL; $LEGITI_ONLINE_STORE.")
    redis_key_prefix: str = "legiti"

    def resolved_url(self) -> str:
        default = f"sqlite:///{self.data.resolve(layout.ONLINE_STORE_FILE)}"
        return self.url or os.environ.get("LEGITI_ONLINE_STORE") or default

    def redacted_url(self) -> str:
        """The URL without a password, safe for logs and metadata."""
        url = self.resolved_url()
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (
            f":{parts.port}" if parts.port else ""
        )
        return parts._replace(netloc=netloc).geturl()

    def open(self) -> OnlineStore:
        return open_online_store(self.resolved_url(), redis_key_prefix=self.redis_key_prefix)
