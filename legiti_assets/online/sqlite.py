"""SQLite online store: one file, one table per feature set, timestamps as INTEGER epoch seconds;
COUNT columns are ``INTEGER NOT NULL``, INT columns ``INTEGER``, FLOAT columns ``REAL``."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from legiti_assets.online.base import (
    DEFAULT_BATCH_SIZE,
    Loaded,
    OnlineStore,
    batches,
    check_request,
    epoch_bounds,
    per_timestamp,
)
from legiti_assets.online.values import (
    COUNT,
    FLOAT,
    INT,
    TIMESTAMP_FIELD,
    Features,
    FeatureSetTable,
    Row,
    arrow_states,
    empty_features,
    from_epoch_seconds,
    prepare,
    to_epoch_seconds,
)

# SQLite's default limit on bound parameters is 32766; stay far below it.
_SQLITE_READ_CHUNK = 500
# A load binds this many rows per INSERT (fewer if the parameter limit says so): one statement
# per row costs a Python call and a statement reset each.
_SQLITE_LOAD_ROWS = 500
# A load turns this many states at a time into Python values for sqlite3 to bind.
_SQLITE_LOAD_CHUNK = 50_000
# A load of at least 1/_SQLITE_REINDEX_SHARE of the table's rows rebuilds its timestamp index.
_SQLITE_REINDEX_SHARE = 10

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
    # an upsert of many rows: insert_prefix, the rows' VALUES, on_conflict, the replace-until bound
    insert_prefix: str
    on_conflict: str
    select_prefix: str
    timestamps_prefix: str
    count: str
    drop_index: str
    create_index: str
    keys: str
    delete: str


def _parameters(batch: pa.RecordBatch) -> np.ndarray:
    """The batch's values as Python objects, one row per state: what sqlite3 binds."""
    params = np.empty((batch.num_rows, batch.num_columns), dtype=object)
    for i, column in enumerate(batch.columns):
        # numpy turns each value into a Python int, float or str in C; to_numpy would make
        # nulls NaN, so columns with nulls go through Python lists (None).
        params[:, i] = column.to_pylist() if column.null_count else column.to_numpy(False)
    return params


def _values_row(width: int) -> str:
    return "(" + ", ".join("?" * width) + ")"


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
        index = f'"{table.name}__by_timestamp"'
        create_index = f'CREATE INDEX IF NOT EXISTS {index} ON {name}("{TIMESTAMP_FIELD}")'
        self._conn.execute(create_index)
        all_columns = [key, *columns]
        in_range = f'"{TIMESTAMP_FIELD}" BETWEEN ? AND ?'
        insert_prefix = f"INSERT INTO {name} ({', '.join(all_columns)}) VALUES "
        on_conflict = (
            f" ON CONFLICT({key}) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in columns)
            + f' WHERE excluded."{TIMESTAMP_FIELD}" >= {name}."{TIMESTAMP_FIELD}"'
            + f' OR {name}."{TIMESTAMP_FIELD}" <= '
        )
        statements = _SQLiteStatements(
            upsert=insert_prefix + _values_row(len(all_columns)) + on_conflict + "?",
            insert_prefix=insert_prefix,
            on_conflict=on_conflict,
            select_prefix=f"SELECT {', '.join(all_columns)} FROM {name} WHERE {key} IN ",
            timestamps_prefix=f'SELECT {key}, "{TIMESTAMP_FIELD}" FROM {name} WHERE {key} IN ',
            count=f"SELECT COUNT(*) FROM {name}",
            drop_index=f"DROP INDEX {index}",
            create_index=create_index,
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

    def load(
        self,
        table: FeatureSetTable,
        batches: Iterable[pa.RecordBatch],
        *,
        replace_until: datetime | None = None,
    ) -> Loaded:
        """One transaction: the states are all applied (where not stale) or, if one is invalid
        or the write fails, none is."""
        checked = [arrow_states(table, batch) for batch in batches]
        if not checked:
            return Loaded({}, {})
        states = pa.Table.from_batches(checked)
        # In key order the table's B-tree fills leaf after leaf; in Spark's order (hash
        # partitions) every insert lands on another page. Taken a chunk at a time: a sorted
        # copy of every state would double what the load holds. States handed over in key
        # order (`local_latest`) are taken as they are.
        in_key_order = None
        if not _ascending(states.column(table.key)):
            in_key_order = pc.sort_indices(states, [(table.key, "ascending")])
        # an int from to_epoch_seconds, safe to inline; NULL: only newer-or-equal states apply
        until = "NULL" if replace_until is None else str(to_epoch_seconds(replace_until))
        width = states.num_columns
        offered, applied = Counter[int](), Counter[int]()
        with self._lock:
            statements = self._prepared(table)
            limit = self._conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            per_statement = max(1, min(_SQLITE_LOAD_ROWS, limit // width))
            upsert_many = (
                statements.insert_prefix
                + ",".join([_values_row(width)] * per_statement)
                + statements.on_conflict
                + until
            )
            upsert_one = statements.insert_prefix + _values_row(width) + statements.on_conflict
            upsert_one += until
            with self._transaction():
                (stored,) = self._conn.execute(statements.count).fetchone()
                # The timestamp index takes states of many days at as many places, each insert
                # a rebalance of pages: past a share of the table, building it anew is cheaper.
                # Readers see the old index until the transaction commits.
                reindex = states.num_rows * _SQLITE_REINDEX_SHARE >= stored
                if reindex:
                    self._conn.execute(statements.drop_index)
                for start in range(0, states.num_rows, _SQLITE_LOAD_CHUNK):
                    if in_key_order is None:
                        rows = states.slice(start, _SQLITE_LOAD_CHUNK)
                    else:
                        rows = states.take(in_key_order.slice(start, _SQLITE_LOAD_CHUNK))
                    batch = rows.combine_chunks().to_batches()[0]
                    params = _parameters(batch)
                    whole = len(params) - len(params) % per_statement
                    done = 0
                    if whole:
                        grouped = params[:whole].reshape(-1, per_statement * width).tolist()
                        done += self._conn.executemany(upsert_many, grouped).rowcount
                    if whole < len(params):
                        done += self._conn.executemany(upsert_one, params[whole:].tolist()).rowcount
                    stamps = batch.column(TIMESTAMP_FIELD)
                    offered.update(per_timestamp(stamps))
                    if done == batch.num_rows:
                        applied.update(per_timestamp(stamps))
                    else:
                        applied.update(self._applied(statements, batch))
                if reindex:
                    self._conn.execute(statements.create_index)
        return Loaded.of((s, n, applied[s]) for s, n in offered.items())

    def _applied(self, statements: _SQLiteStatements, batch: pa.RecordBatch) -> Counter[int]:
        """Per timestamp, the states of `batch` the store now holds. Call with the lock held,
        right after writing `batch`: a stale state was skipped for a newer one, so the stored
        timestamp tells which were applied."""
        keys = batch.column(0).to_pylist()
        offered = dict(zip(keys, batch.column(TIMESTAMP_FIELD).to_pylist(), strict=True))
        applied = Counter[int]()
        for start in range(0, len(keys), _SQLITE_READ_CHUNK):
            chunk = keys[start : start + _SQLITE_READ_CHUNK]
            sql = statements.timestamps_prefix + "(" + ",".join("?" * len(chunk)) + ")"
            for key, ts in self._conn.execute(sql, chunk):
                if offered[key] == ts:
                    applied[ts] += 1
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


def _ascending(keys: pa.ChunkedArray) -> bool:
    """Whether `keys` are in ascending order already (as a store may hand them over)."""
    whole = keys.combine_chunks()
    return len(whole) < 2 or pc.all(pc.less_equal(whole[:-1], whole[1:])).as_py()
