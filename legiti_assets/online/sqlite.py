"""SQLite online store: one file, one table per feature set, timestamps as INTEGER epoch seconds;
COUNT columns are ``INTEGER NOT NULL``, INT columns ``INTEGER``, FLOAT columns ``REAL``."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from legiti_assets.online.base import (
    DEFAULT_BATCH_SIZE,
    OnlineStore,
    batches,
    check_request,
    epoch_bounds,
)
from legiti_assets.online.values import (
    COUNT,
    FLOAT,
    INT,
    TIMESTAMP_FIELD,
    Features,
    FeatureSetTable,
    Row,
    empty_features,
    from_epoch_seconds,
    prepare,
    to_epoch_seconds,
)

# SQLite's default limit on bound parameters is 32766; stay far below it.
_SQLITE_READ_CHUNK = 500

_SQLITE_MIRRORED = "legiti#mirrored"

# Declared type and NOT NULL flag, as PRAGMA table_info reports them.
_SQLITE_COLUMN_TYPES: dict[str, tuple[str, int]] = {
    COUNT: ("INTEGER", 1),
    INT: ("INTEGER", 0),
    FLOAT: ("REAL", 0),
}


@dataclass(frozen=True)
class _SQLiteStatements:
    upsert: str
    select_prefix: str
    keys: str
    delete: str


class SQLiteOnlineStore(OnlineStore):
    """One SQLite file (WAL), one ``WITHOUT ROWID`` table per feature set keyed by the entity key.

    A single connection is shared by all threads behind a lock: reads are tens of microseconds,
    so serializing them costs less than a connection per thread. Separate processes (a Dagster
    run writing while the server reads) coordinate through WAL and the busy timeout.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        busy_timeout_s: float = 30.0,
    ) -> None:
        self.path = str(path)
        self.batch_size = batch_size
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so each batch is one transaction.
        self._conn = sqlite3.connect(
            self.path,
            timeout=busy_timeout_s,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=256,
        )
        self._lock = threading.Lock()
        self._statements: dict[FeatureSetTable, _SQLiteStatements] = {}
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode is still crash-consistent; only the last commits can be lost on
            # power failure, and they are re-materializable.
            self._conn.execute("PRAGMA synchronous=NORMAL")

    def _prepared(self, table: FeatureSetTable) -> _SQLiteStatements:
        """Create the table on first use and build its SQL. Call with the lock held."""
        statements = self._statements.get(table)
        if statements is not None:
            return statements
        # Identifiers were validated by FeatureSetTable, so quoting them here is safe.
        name = f'"{table.name}"'
        key = f'"{table.key}"'
        declared = {
            TIMESTAMP_FIELD: ("INTEGER", 1),
            **{
                c: _SQLITE_COLUMN_TYPES[t]
                for c, t in zip(table.feature_columns, table.feature_types, strict=True)
            },
        }
        columns = [f'"{c}"' for c in declared]
        self._conn.execute(
            f"CREATE TABLE IF NOT EXISTS {name} ({key} TEXT PRIMARY KEY NOT NULL, "
            + ", ".join(
                f'"{c}" {sql_type}{" NOT NULL" if not_null else ""}'
                for c, (sql_type, not_null) in declared.items()
            )
            + ") WITHOUT ROWID"
        )
        existing = {
            row[1]: (row[2].upper(), row[3])
            for row in self._conn.execute(f"PRAGMA table_info({name})")
        }
        missing = [c for c in (table.key, *declared) if c not in existing]
        if missing:
            raise ValueError(
                f"table {table.name!r} in {self.path} lacks columns {missing}; "
                "drop it and re-materialize the feature set"
            )
        # a column the declaration dropped may be NOT NULL and would refuse every upsert
        extra = [c for c in existing if c not in (table.key, *declared)]
        if extra:
            raise ValueError(
                f"table {table.name!r} in {self.path} has columns {extra} the feature set no "
                "longer declares; drop it and re-materialize the feature set"
            )
        # A column created with another type would hand back the wrong Python type (an integral
        # float in an INTEGER column reads as an int) or refuse nulls.
        retyped = [c for c, sql_type in declared.items() if existing[c] != sql_type]
        if retyped:
            raise ValueError(
                f"table {table.name!r} in {self.path} has columns {retyped} of another type; "
                "drop it and re-materialize the feature set"
            )
        # keys by timestamp: what a run over a range of days may have to replace
        self._conn.execute(
            f'CREATE INDEX IF NOT EXISTS "{table.name}__by_timestamp" '
            f'ON {name}("{TIMESTAMP_FIELD}")'
        )
        all_columns = [key, *columns]
        in_range = f'"{TIMESTAMP_FIELD}" BETWEEN ? AND ?'
        statements = _SQLiteStatements(
            upsert=(
                f"INSERT INTO {name} ({', '.join(all_columns)}) "
                f"VALUES ({', '.join('?' for _ in all_columns)}) "
                f"ON CONFLICT({key}) DO UPDATE SET "
                + ", ".join(f"{c} = excluded.{c}" for c in columns)
                + f' WHERE excluded."{TIMESTAMP_FIELD}" >= {name}."{TIMESTAMP_FIELD}"'
                + f' OR {name}."{TIMESTAMP_FIELD}" <= ?'
            ),
            select_prefix=f"SELECT {', '.join(all_columns)} FROM {name} WHERE {key} IN ",
            keys=f"SELECT {key} FROM {name} WHERE {in_range}",
            delete=f"DELETE FROM {name} WHERE {key} = ? AND {in_range}",
        )
        self._statements[table] = statements
        return statements

    def write_latest(
        self,
        table: FeatureSetTable,
        rows: Iterable[Row],
        *,
        replace_until: datetime | None = None,
    ) -> int:
        applied = 0
        # NULL: "stored <= NULL" is never true, so only newer-or-equal rows apply
        until = None if replace_until is None else to_epoch_seconds(replace_until)
        for batch in batches(rows, self.batch_size):
            params = [(key, ts, *values, until) for key, ts, values in prepare(table, batch)]
            with self._lock:
                upsert = self._prepared(table).upsert
                with self._transaction():
                    # executemany sums the changes; a stale row skipped by the WHERE counts 0.
                    applied += self._conn.executemany(upsert, params).rowcount
        return applied

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction. Call with the lock held."""
        # IMMEDIATE takes the write lock up front, so concurrent writers wait on the busy
        # timeout instead of failing on a read-to-write lock upgrade.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            # Some errors (e.g. disk full) already rolled the transaction back.
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def get_features(
        self, entity: str, keys: Sequence[str], feature_sets: Sequence[FeatureSetTable]
    ) -> dict[str, Features]:
        check_request(entity, feature_sets)
        result = {key: empty_features(feature_sets) for key in keys}
        unique = list(result)
        with self._lock:
            for table in feature_sets:
                select_prefix = self._prepared(table).select_prefix
                for start in range(0, len(unique), _SQLITE_READ_CHUNK):
                    chunk = unique[start : start + _SQLITE_READ_CHUNK]
                    sql = select_prefix + "(" + ",".join("?" * len(chunk)) + ")"
                    # The column types make SQLite return int, float or None as written.
                    for key, ts, *values in self._conn.execute(sql, chunk):
                        features = result[key]
                        features.update(zip(table.feature_columns, values, strict=True))
                        features[table.timestamp_feature] = from_epoch_seconds(ts)
        return result

    def keys(
        self,
        table: FeatureSetTable,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[str]:
        bounds = epoch_bounds(since, until)
        with self._lock:
            return [key for (key,) in self._conn.execute(self._prepared(table).keys, bounds)]

    def delete(
        self, table: FeatureSetTable, keys: Iterable[str], *, since: datetime, until: datetime
    ) -> int:
        bounds = epoch_bounds(since, until)
        params = [(key, *bounds) for key in keys]
        with self._lock:
            statement = self._prepared(table).delete
            with self._transaction():
                removed = self._conn.executemany(statement, params).rowcount
        return max(removed, 0)

    def latest_timestamp(self, table: FeatureSetTable) -> datetime | None:
        with self._lock:
            self._prepared(table)
            (ts,) = self._conn.execute(
                f'SELECT MAX("{TIMESTAMP_FIELD}") FROM "{table.name}"'
            ).fetchone()
        return None if ts is None else from_epoch_seconds(ts)

    def count(self, table: FeatureSetTable) -> int:
        with self._lock:
            self._prepared(table)
            (n,) = self._conn.execute(f'SELECT COUNT(*) FROM "{table.name}"').fetchone()
        return int(n)

    def _mirrored_table(self) -> str:
        # "#" cannot appear in a feature set's name: no table collides with it
        self._conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{_SQLITE_MIRRORED}" (feature_set TEXT NOT NULL, '
            "day TEXT NOT NULL, token TEXT NOT NULL, PRIMARY KEY (feature_set, day)) WITHOUT ROWID"
        )
        return f'"{_SQLITE_MIRRORED}"'

    def mirrored(self, table: FeatureSetTable) -> dict[str, str]:
        with self._lock:
            name = self._mirrored_table()
            rows = self._conn.execute(
                f"SELECT day, token FROM {name} WHERE feature_set = ?", (table.name,)
            )
            return dict(rows.fetchall())

    def record_mirrored(self, table: FeatureSetTable, tokens: Mapping[str, str]) -> None:
        with self._lock:
            name = self._mirrored_table()
            with self._transaction():
                self._conn.executemany(
                    f"INSERT OR REPLACE INTO {name} VALUES (?, ?, ?)",
                    [(table.name, day, token) for day, token in tokens.items()],
                )

    def ping(self) -> None:
        with self._lock:
            self._conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
