"""Dagster's SQLite event log, keeping its database connections open between events.

A single-run backfill of N days records one materialization per day and asset. The stock
`SqliteEventLogStorage` builds a new SQLAlchemy engine for every statement (so nothing is
compiled once) and syncs the disk on every commit: ~10 ms an event, minutes for a two-year
range. This subclass keeps one engine per database file (the index and the few latest runs) and
syncs in WAL mode's NORMAL level, durable across process crashes (a power loss may drop the
latest events, never corrupt the file). Files and schema are the stock ones: `dagster dev`, the
daemon and `dagster asset materialize` can share a DAGSTER_HOME with or without it.

It subclasses Dagster's internals (`dagster._core`): nothing public offers this. This module is
the only place that touches them, and it refuses to load on a Dagster version it was not
verified with. The supported path needs none of it: remove `event_log_storage` from
deploy/dagster.yaml for the stock SQLite storage, or use PostgreSQL (`storage: postgres:`,
dagster-postgres), which keeps its connections pooled itself (README, "Dagster storage").
"""

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import dagster as dg
import sqlalchemy as db

# The versions whose SqliteEventLogStorage internals this subclass was read against and tested on.
VERIFIED_DAGSTER_VERSIONS = ("1.13.27",)
if dg.__version__ not in VERIFIED_DAGSTER_VERSIONS:
    raise ImportError(
        "legiti_assets.event_log (the pooled SQLite event log of deploy/dagster.yaml) was "
        f"verified with Dagster {', '.join(VERIFIED_DAGSTER_VERSIONS)}, not {dg.__version__}: "
        "it subclasses Dagster internals. Remove the event_log_storage block from "
        "$DAGSTER_HOME/dagster.yaml "
        "(stock SQLite storage) or use PostgreSQL storage, then check the new version's "
        "SqliteEventLogStorage before adding it to VERIFIED_DAGSTER_VERSIONS."
    )

from dagster._core.events import AssetCheckEvaluationPlanned, DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    SqlEventLogStorageTable,
)
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
    SqliteEventLogStorageWatchdog,
)
from dagster._serdes import ConfigurableClassData, serialize_value
from sqlalchemy.engine import Connection, Engine
from watchdog.events import FileSystemEvent
from watchdog.observers import Observer

# Run databases kept open besides the index: a run writes to one, the UI reads a few.
OPEN_RUN_DATABASES = 4
# The batches `store_event_batch` writes in one transaction per database (with
# DAGSTER_EVENT_BATCH_SIZE set, a range run sends each output's per-day events as one batch).
BATCHED_EVENT_TYPES = (
    {DagsterEventType.ASSET_MATERIALIZATION},
    {DagsterEventType.ASSET_OBSERVATION},
)


def _synchronous_normal(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


class _RunLogWatchdog(SqliteEventLogStorageWatchdog):
    """The stock watcher of a run's database, woken by its write-ahead log too. The stock
    storage closes its connection after every statement, and SQLite's last close checkpoints
    the log into `<run>.db`, the one file the stock watcher looks at; kept open, the log is
    checkpointed only every ~1000 pages, and the UI's view of a running run would wait for it."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._patterns = [self._log_path, f"{self._log_path}-wal"]

    def on_modified(self, event: FileSystemEvent) -> None:
        self._process_log()


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` with an engine per database file kept between statements.

    Configured in deploy/dagster.yaml; `base_dir` defaults to Dagster's own
    `$DAGSTER_HOME/history/runs`.
    """

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_lock = threading.Lock()
        self._tables: set[str] = set()
        self._asset_key_columns: set[str] = set()
        super().__init__(base_dir, inst_data)

    @classmethod
    def config_type(cls) -> dict[str, dg.Field]:
        return {"base_dir": dg.Field(dg.StringSource, is_required=False)}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: dict[str, str]
    ) -> "PooledSqliteEventLogStorage":
        base_dir = config_value.get("base_dir")
        if base_dir is None:
            home = os.environ.get("DAGSTER_HOME")
            if not home:
                raise dg.DagsterInvariantViolationError(
                    "PooledSqliteEventLogStorage needs base_dir or DAGSTER_HOME"
                )
            base_dir = os.path.join(home, "history", "runs")
        return cls(base_dir, inst_data)

    def _engine(self, shard: str) -> Engine:
        with self._engines_lock:
            engine = self._engines.get(shard)
            if engine is not None:
                self._engines.move_to_end(shard)
                return engine
            engine = db.create_engine(
                self.conn_string_for_shard(shard),
                pool_size=1,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            )
            db.event.listen(engine, "connect", _synchronous_normal)
            self._engines[shard] = engine
            run_shards = [s for s in self._engines if s != INDEX_SHARD_NAME]
            for old in run_shards[:-OPEN_RUN_DATABASES]:
                self._engines.pop(old).dispose()
            return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # same contract as the parent: one transaction, serialized by the storage's lock
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def has_table(self, table_name: str) -> bool:
        # asked before every event's tags are stored; a table, once there, stays
        if table_name in self._tables:
            return True
        with self._engine(INDEX_SHARD_NAME).connect() as conn:
            found = bool(conn.dialect.has_table(conn, table_name))
        if found:
            self._tables.add(table_name)
        return found

    def _has_asset_key_col_on_connection(self, conn: Connection, column_name: str) -> bool:
        # asked for every asset event; reflection costs more than the insert it guards
        if column_name in self._asset_key_columns:
            return True
        found = super()._has_asset_key_col_on_connection(conn, column_name)
        if found:
            self._asset_key_columns.add(column_name)
        return found

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """A batch of materializations (or observations) in one transaction per database, the
        asset's row updated once from its last event: what dagster-postgres's
        `store_event_batch` does. The stock SQLite storage stores them one event at a time,
        each with its own commits and a serialized copy in the asset's row (~4 ms an event)."""
        types = {event.dagster_event_type for event in events}
        if (
            len(events) < 2
            or types not in BATCHED_EVENT_TYPES
            or any(event.get_dagster_event().asset_key is None for event in events)
        ):
            super().store_event_batch(events)
            return
        rows = [self._event_to_row(event) for event in events]
        for run_id in dict.fromkeys(row["run_id"] for row in rows):
            with self.run_connection(run_id) as conn:
                conn.execute(
                    SqlEventLogStorageTable.insert(), [r for r in rows if r["run_id"] == run_id]
                )
        with self.index_transaction() as conn:
            # the index's ids, in the rows' order (for that SQLAlchemy inserts SQLite's rows
            # one by one, in this one transaction), refer the tags and the asset's row to them
            inserted = conn.execute(
                SqlEventLogStorageTable.insert().returning(
                    SqlEventLogStorageTable.c.id, sort_by_parameter_order=True
                ),
                rows,
            )
            ids = [row[0] for row in inserted]
            self._store_asset_event_tags(conn, events, ids)
            last = {
                event.get_dagster_event().asset_key: (event, id_)
                for event, id_ in zip(events, ids, strict=True)
            }
            for event, id_ in last.values():
                self._store_asset_event(conn, event, id_)

    def _store_asset_check_evaluation_planned(
        self, event: EventLogEntry, event_id: int | None
    ) -> None:
        # the parent's rows, with the event serialized once rather than once per partition
        planned = event.get_dagster_event().event_specific_data
        assert isinstance(planned, AssetCheckEvaluationPlanned)
        partitions = (
            planned.partitions_subset.get_partition_keys() if planned.partitions_subset else [None]
        )
        row = {
            "asset_key": planned.asset_key.to_string(),
            "check_name": planned.check_name,
            "run_id": event.run_id,
            "execution_status": AssetCheckExecutionRecordStatus.PLANNED.value,
            "evaluation_event": serialize_value(event),
            "evaluation_event_timestamp": self._event_insert_timestamp(event),
            "evaluation_event_storage_id": event_id,
        }
        with self.index_connection() as conn:
            # executemany: one compiled statement, not one with a VALUES tuple per partition
            conn.execute(
                AssetCheckExecutionsTable.insert(),
                [{**row, "partition": partition} for partition in partitions],
            )

    def watch(self, run_id: str, cursor: str | None, callback: Any) -> None:
        # the stock method, with the watcher above
        if not self._obs:
            self._obs = Observer()
            self._obs.start()
        watchdog = _RunLogWatchdog(self, run_id, callback, cursor)
        self._watchers[run_id][callback] = (
            watchdog,
            self._obs.schedule(watchdog, self._base_dir, recursive=True),
        )

    def _dispose_engines(self) -> None:
        with self._engines_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()

    def wipe(self) -> None:
        self._dispose_engines()  # wipe deletes the run databases' files
        super().wipe()

    def dispose(self) -> None:
        self._dispose_engines()
        super().dispose()
