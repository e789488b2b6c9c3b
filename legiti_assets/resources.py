"""Resources: where the data lives and the Spark session every asset of a run shares."""

import contextlib
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn
from urllib.parse import urlsplit

import dagster as dg
from dagster_pyspark import LazyPySparkResource
from dagster_pyspark.resources import spark_session_from_config
from pydantic import Field, PrivateAttr
from pyspark import SparkContext
from pyspark.errors import PySparkRuntimeError
from pyspark.sql import SparkSession

from legiti_assets import jvm_archive, layout, local_fs, maven
from legiti_assets.locations import is_local, join, location
from legiti_assets.online import OnlineStore, open_online_store

DEFAULT_DATA_DIR = "data"


class DataDir(dg.ConfigurableResource):
    """The one directory holding the landing file and every output.

    `path=None` means `$LEGITI_DATA_DIR`, else `data`: a local directory, or a URI of an object
    store or HDFS (`s3a://bucket/prefix`; `locations.py`). It is read when a run uses it, not at
    import: `dg.EnvVar` has no default, so an unset variable would fail every run.
    """

    path: str | None = Field(default=None, description="Data directory; $LEGITI_DATA_DIR.")

    @property
    def root(self) -> Path:
        """The directory: a local `Path`, or a `UPath` for a URI (`locations.py`)."""
        return location(self.path or os.environ.get("LEGITI_DATA_DIR") or DEFAULT_DATA_DIR)

    def resolve(self, relative: str) -> Path:
        """`relative` under the root; refuses anything that would escape it."""
        return join(self.root, relative)

    @property
    def landing_dir(self) -> Path:
        """Every `*.csv` here is part of the landing, applied in name order."""
        return self.resolve(layout.LANDING_DIR)


# Spark's driver log while it starts: errors only (its default prints notes and warnings).
LOG4J2_CONFIG = Path(__file__).with_name("log4j2.properties")

# Spark's UI starts on port 4040 and, when another session holds it (another run's, a notebook's,
# `make update` beside `make dev`), warns and tries the next one. A session here takes the first
# free one of those ports itself, quietly, and logs its UI's address once.
SPARK_UI_FIRST_PORT = 4040
SPARK_UI_PORTS = 16  # as many as Spark would try (spark.port.maxRetries)


def free_ui_port(host: str) -> int:
    """The first of Spark's UI ports that `host` has free, probed as Spark's UI server binds it
    (reusing the address: a closed connection's TIME_WAIT does not hold a port); 0, any free
    port, if none is."""
    for port in range(SPARK_UI_FIRST_PORT, SPARK_UI_FIRST_PORT + SPARK_UI_PORTS):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                continue
        return port
    return 0


def _session_running() -> bool:
    try:
        SparkSession.active()
    except PySparkRuntimeError:
        return False
    return True


_ui_logged: set[str] = set()  # the applications whose UI address was logged
_ui_lock = threading.Lock()


def _log_ui_once(context: SparkContext) -> None:
    """Log where the UI of the process's Spark application is, once per application: every
    resource that reuses the session (a run's, and each run an update executes) would again."""
    ui = context.uiWebUrl  # None with spark.ui.enabled=false
    with _ui_lock:
        if ui is None or context.applicationId in _ui_logged:
            return
        _ui_logged.add(context.applicationId)
    dg.get_dagster_logger().info(f"Spark UI (while this process's session runs): {ui}")


def _cancel_all_jobs() -> None:
    # no session yet, or one already stopped: nothing runs to cancel
    with contextlib.suppress(Exception):
        SparkSession.active().sparkContext.cancelAllJobs()


def _cancel_jobs_on_interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    """Ctrl-C: cancel the session's running Spark jobs, then interrupt as Python would. The
    cancel goes from another thread: the interrupted one may be inside a call to the JVM, and
    Py4J cannot send a second command on its connection (pyspark's own handler tries)."""
    threading.Thread(target=_cancel_all_jobs, name="spark-cancel", daemon=True).start()
    raise KeyboardInterrupt


class SparkResource(LazyPySparkResource):
    """dagster-pyspark's lazy Spark session, started once per run process when a step first
    asks for it and shared by the run's steps.

    `master=None` means `$LEGITI_SPARK_MASTER`, else `local[*]`: `spark://host:7077`,
    `k8s://...` or `yarn` run the same assets on a cluster. `spark_config` adds or overrides
    Spark settings (e.g. executor memory), except the UTC time zone every day relies on.
    """

    spark_config: dict[str, Any] = Field(
        default_factory=dict, description="Extra Spark settings, e.g. spark.executor.memory."
    )
    master: str | None = Field(default=None, description="Spark master; $LEGITI_SPARK_MASTER.")
    app_name: str = "legiti-assets"
    shuffle_partitions: int = Field(
        default=8, description="spark.sql.shuffle.partitions: small by default, data is small."
    )
    driver_memory: str = Field(
        default="1536m",
        description="spark.driver.memory; with a local master the tasks share this heap.",
    )
    start_attempts: int = 3
    fork_free_local_fs: bool = Field(
        default=True,
        description="Local masters: file:// without a forked chmod per file (local_fs.py).",
    )
    s3a: bool | None = Field(
        default=None,
        description="Put hadoop-aws on the class path for s3a:// tables (from Maven Central, "
        "cached); None: when $LEGITI_DATA_DIR is an s3a:// URI.",
    )
    class_data_sharing: bool = Field(
        default=True,
        description="Map the driver JVM's classes from the archive `make install` builds "
        "(jvm_archive.py), when there is one: ~3 s less per process.",
    )
    _session: SparkSession | None = PrivateAttr(default=None)

    def resolved_master(self) -> str:
        return self.master or os.environ.get("LEGITI_SPARK_MASTER") or "local[*]"

    def session_config(self) -> dict[str, str]:
        """Every setting the session starts with: ours, then `spark_config`, then UTC."""
        master = self.resolved_master()
        config = {
            "spark.master": master,
            "spark.app.name": self.app_name,
            "spark.sql.shuffle.partitions": str(self.shuffle_partitions),
            "spark.driver.memory": self.driver_memory,
            "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={LOG4J2_CONFIG.as_uri()}",
            "spark.ui.showConsoleProgress": "false",
            # Parquet timestamps stay instants whatever the reader's time zone
            "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
            "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
            "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
            "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
            # a table's log is small: its state is rebuilt in a couple of tasks, not 50
            "spark.databricks.delta.snapshotPartitions": "2",
            # VACUUM commits nothing: the newest commit of a table is always a write of ours
            "spark.databricks.delta.vacuum.logging.enabled": "false",
            # each table's log state stays cached in the driver: a long-lived process touching
            # many tables (a notebook, the test suite) keeps the most recent ones only
            "spark.databricks.delta.delta.log.cacheSize": "32",
        }
        s3a = self.s3a
        if s3a is None:
            s3a = os.environ.get("LEGITI_DATA_DIR", "").startswith("s3a://")
        jars = [str(p) for p in maven.jars(maven.DELTA + (maven.S3A if s3a else ()))]
        if master.startswith("local"):
            # nothing but this process needs the driver or its UI: keep them on loopback
            config["spark.driver.bindAddress"] = "127.0.0.1"
            config["spark.driver.host"] = "127.0.0.1"
            # s3a buffers uploads through Hadoop's LocalFileSystem, which the class is not
            if self.fork_free_local_fs and not s3a:
                config.update(local_fs.spark_config())
            # on the JVM's own class path, Delta's classes are in its class-data archive too
            config["spark.driver.extraClassPath"] = os.pathsep.join(
                p for p in [config.get("spark.driver.extraClassPath", ""), *jars] if p
            )
        else:
            config["spark.jars"] = ",".join(jars)  # shipped to every executor
        config.update({key: str(value) for key, value in self.spark_config.items()})
        if self.class_data_sharing:
            sharing = jvm_archive.java_options(config)
            if sharing:
                java = config.get("spark.driver.extraJavaOptions", "")
                config["spark.driver.extraJavaOptions"] = f"{java} {sharing}".strip()
        # days are UTC days everywhere (partitions, windows, Parquet timestamps): not a setting
        config["spark.sql.session.timeZone"] = "UTC"
        return config

    @property
    def spark_session(self) -> SparkSession:
        """The session, started on first use; starting the JVM or reaching a cluster can fail
        transiently (a port taken, a master still starting): that is retried, not the work."""
        if self._session is None:
            config = self.session_config()
            if config["spark.master"].startswith("local"):
                # the driver binds to loopback: say so before the JVM starts, so it does not
                # warn that the host name resolves to a loopback address
                os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
                # local Python workers (the Redis online store's writers) run this interpreter,
                # with its packages, not whichever python3 is first on PATH; pyspark reads only
                # the variable, when the context starts. A cluster's executors are told by theirs.
                os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            # unless spark_config picks one, or the process's session is reused (the runs an
            # update executes in its own process): the UI server binds SPARK_LOCAL_IP, else any
            pick_ui_port = "spark.ui.port" not in config and not _session_running()
            for attempt in range(self.start_attempts):
                if pick_ui_port:
                    host = os.environ.get("SPARK_LOCAL_IP", "0.0.0.0")
                    config["spark.ui.port"] = str(free_ui_port(host))
                try:
                    self._session = spark_session_from_config(config)
                    break
                except Exception:
                    if attempt + 1 == self.start_attempts:
                        raise
                    time.sleep(2**attempt)
            assert self._session is not None
            self._session.sparkContext.setLogLevel("ERROR")
            _log_ui_once(self._session.sparkContext)
        return self._session

    def start_in_background(self) -> threading.Thread:
        """Start the session in a daemon thread, so the JVM boots while the caller sets up its
        runs (~1.5 s of a local process). A run's first use gets this session (pyspark's
        builder holds a lock while it starts one); if starting failed, that use starts again
        and its step reports why."""

        def start() -> None:
            with contextlib.suppress(Exception):
                _ = self.spark_session

        if threading.current_thread() is threading.main_thread():
            # pyspark installs its own handler only when its context starts on the main thread
            signal.signal(signal.SIGINT, _cancel_jobs_on_interrupt)
        thread = threading.Thread(target=start, name="spark-start", daemon=True)
        thread.start()
        return thread

    @property
    def spark_context(self) -> SparkContext:
        return self.spark_session.sparkContext


class OnlineStoreResource(dg.ConfigurableResource):
    """The online feature store: latest state per key, for the model service.

    `url=None` means `$LEGITI_ONLINE_STORE`, else SQLite at `<data>/online_store.db`;
    `redis://host:port/db` selects Redis.
    """

    data: DataDir
    url: str | None = Field(default=None, description="Store URL; $LEGITI_ONLINE_STORE.")
    redis_key_prefix: str = "legiti"

    def resolved_url(self) -> str:
        url = self.url or os.environ.get("LEGITI_ONLINE_STORE")
        if url:
            return url
        if not is_local(self.data.root):
            raise ValueError(
                f"the data directory {self.data.root} is not local, so it cannot hold the SQLite "
                "online store: set LEGITI_ONLINE_STORE (redis://host:port/db, or "
                "sqlite:////a/local/file.db)"
            )
        return f"sqlite:///{self.data.resolve(layout.ONLINE_STORE_FILE)}"

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
