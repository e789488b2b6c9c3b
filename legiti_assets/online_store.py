"""Online feature store: the latest state per entity key, for low-latency serving.

Each feature set is a table of states ``(key, timestamp, features...)``. The online store keeps
only the newest state per key and never lets an older state overwrite a newer one, so re-running a
historical backfill after a recent materialization is harmless.

Feature columns are typed (``FeatureSetTable.feature_types``):

* ``COUNT``: an int, never null; a key without stored state reads as 0 (no events).
* ``INT``: an int or None (sum/min/max of an int column over an empty window are null).
* ``FLOAT``: a float or None (avg, stddev...).

Writes accept Python, numpy and Decimal numbers; NaN is stored as null, as butterfree does. Reads
return exactly the Python type of the column (int, float or None), and floats round-trip bit for
bit, except that -0.0 is stored as 0.0.

Backends:

* ``SQLiteOnlineStore``: one file, one table per feature set, timestamps as INTEGER epoch seconds;
  COUNT columns are ``INTEGER NOT NULL``, INT columns ``INTEGER``, FLOAT columns ``REAL``.
* ``RedisOnlineStore``: one hash per (feature set, key) at ``<prefix>:<feature set>:<key>`` with
  the feature columns plus ``timestamp`` (epoch seconds); per-table bookkeeping (row count and
  newest timestamp) lives at ``<prefix>:#meta:<feature set>:{count,latest}``. Values are strings:
  ``str(int)``, ``repr(float)`` (which parses back to the same float), and "" for null.

Timestamps: aware datetimes are converted to UTC; naive datetimes are taken to already be UTC
(what Spark's ``toPandas()`` yields with ``spark.sql.session.timeZone=UTC``). Reads return aware
UTC datetimes. Precision is one second, which is plenty for daily states.
"""

from __future__ import annotations

import contextlib
import functools
import math
import numbers
import re
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import redis

DEFAULT_BATCH_SIZE = 5000
_T = TypeVar("_T")
TIMESTAMP_FIELD = "timestamp"

# Feature column types.
COUNT = "count"
INT = "int"
FLOAT = "float"
FEATURE_TYPES = (COUNT, INT, FLOAT)

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
# Redis prefixes are matched with SCAN globs by tools and tests, so keep them glob- and colon-free.
_REDIS_PREFIX = re.compile(r"^[A-Za-z0-9_.-]+$")
# SQLite's default limit on bound parameters is 32766; stay far below it.
_SQLITE_READ_CHUNK = 500

FeatureValue = int | float | None
# Values may also be numpy or Decimal numbers; ``_prepare`` converts them.
Row = tuple[str, datetime, Sequence[Any]]
Features = dict[str, Any]


def _check_identifier(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise ValueError(f"invalid {kind} {value!r}: must match {_IDENTIFIER.pattern}")
    return value


@dataclass(frozen=True)
class FeatureSetTable:
    """Where a feature set lives in the online store and which typed columns it has.

    ``feature_types`` holds one of COUNT, INT, FLOAT per feature column; left empty, every column
    is a COUNT. It is normalised to the full tuple, so both spellings are equal (and hash alike).
    """

    name: str
    key: str
    feature_columns: tuple[str, ...]
    feature_types: tuple[str, ...] = ()
    entity: str = "user"

    def __post_init__(self) -> None:
        # Names end up in SQL and Redis keys, so they are validated once, here.
        _check_identifier("feature set name", self.name)
        _check_identifier("key column", self.key)
        columns = tuple(self.feature_columns)
        object.__setattr__(self, "feature_columns", columns)
        if not columns:
            raise ValueError(f"feature set {self.name!r} has no feature columns")
        # A lone string would otherwise be split into characters.
        if isinstance(self.feature_types, str):
            raise ValueError(f"feature set {self.name!r}: feature_types must be a sequence")
        types = tuple(self.feature_types) or (COUNT,) * len(columns)
        object.__setattr__(self, "feature_types", types)
        if len(types) != len(columns) or not set(types) <= set(FEATURE_TYPES):
            raise ValueError(
                f"feature set {self.name!r}: feature_types must give one of {FEATURE_TYPES} "
                f"for each of {columns}, got {types}"
            )
        for column in columns:
            _check_identifier("feature column", column)
        reserved = {self.key, TIMESTAMP_FIELD}
        if len(set(columns)) != len(columns) or reserved & set(columns):
            raise ValueError(
                f"feature set {self.name!r}: columns must be unique and must not be "
                f"{sorted(reserved)}: {columns}"
            )

    @property
    def timestamp_feature(self) -> str:
        """Name under which ``get_features`` reports this feature set's state timestamp."""
        return f"{self.name}__{TIMESTAMP_FIELD}"

    @property
    def no_state_values(self) -> tuple[int | None, ...]:
        """What each column reads as for a key without stored state: 0 for a COUNT (no events
        in any window), None otherwise (an empty window has no sum, min, max or average)."""
        return tuple(0 if t == COUNT else None for t in self.feature_types)


def to_epoch_seconds(ts: datetime) -> int:
    if not isinstance(ts, datetime):
        raise ValueError(f"timestamp must be a datetime, got {type(ts).__name__}: {ts!r}")
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return math.floor(ts.timestamp())


def from_epoch_seconds(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


# Built once: a mirror checks every value of millions of states, and an isinstance check
# against ABCs (with a union built per call) costs several times an exact-type test; plain ints
# and floats, almost every value, are told apart by their exact type first (10m online stage:
# user_orders_online 64.6 -> 60.7 s).
_NUMBERS = (numbers.Number, Decimal)
_REALS = (numbers.Real, Decimal)


def _is_null(value: Any) -> bool:
    # NaN != NaN; Spark hands over NaN doubles and pandas turns nulls into NaN.
    kind = type(value)
    if kind is int:
        return False
    if kind is float:
        return value != value
    return value is None or (isinstance(value, _NUMBERS) and value != value)


def _check_number(value: Any) -> None:
    # numbers.Real covers Python and numpy ints and floats; Decimal is what Spark collects for
    # decimal columns. Strings are rejected rather than parsed, and bools (np.bool_ is no Real)
    # because a bool in a numeric column means the wrong column was selected.
    kind = type(value)
    if kind is int or kind is float:
        return
    if isinstance(value, bool) or not isinstance(value, _REALS):
        raise ValueError(f"expected a number, got {type(value).__name__}: {value!r}")


def _as_int(value: Any) -> int:
    # Accepts integral floats (a pandas column with nulls turns float); rejects 2.5 and inf
    # instead of silently truncating them.
    _check_number(value)
    number = int(value)
    if number != value:
        raise ValueError(f"{value!r} is not an integer")
    return number


def _as_count(value: Any) -> int:
    if _is_null(value):
        raise ValueError("a count cannot be null")
    return _as_int(value)


def _as_nullable_int(value: Any) -> int | None:
    return None if _is_null(value) else _as_int(value)


def _as_nullable_float(value: Any) -> float | None:
    if _is_null(value):
        return None
    _check_number(value)
    number = float(value)
    if math.isinf(number):
        # JSON cannot carry it, so the server could not serve it: fail where it was computed.
        raise ValueError(f"{value!r} is not finite")
    # SQLite stores integral REALs as integers and reads -0.0 back as 0.0; normalise it here so
    # both backends agree.
    return number + 0.0


_CONVERTERS: dict[str, Callable[[Any], FeatureValue]] = {
    COUNT: _as_count,
    INT: _as_nullable_int,
    FLOAT: _as_nullable_float,
}


def _batches(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _prepare(
    table: FeatureSetTable, batch: list[Row]
) -> list[tuple[str, int, tuple[FeatureValue, ...]]]:
    """Validate a whole batch before touching the store, so a bad row rejects its entire batch."""
    columns = [
        (c, _CONVERTERS[t]) for c, t in zip(table.feature_columns, table.feature_types, strict=True)
    ]
    prepared = []
    for row in batch:
        try:
            key, ts, raw = row
            if not isinstance(key, str):
                # An int cpf would already have lost its leading zeros.
                raise ValueError(f"key must be a str, got {type(key).__name__}")
            raw = tuple(raw)
            if len(raw) != len(columns):
                raise ValueError(f"expected {len(columns)} values {table.feature_columns}")
            values = []
            for (column, convert), value in zip(columns, raw, strict=True):
                try:
                    values.append(convert(value))
                except (TypeError, ValueError, OverflowError) as exc:
                    raise ValueError(f"{column}: {exc}") from exc
            prepared.append((key, to_epoch_seconds(ts), tuple(values)))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid row for {table.name}: {row!r}: {exc}") from exc
    return prepared


def _check_request(entity: str, feature_sets: Sequence[FeatureSetTable]) -> None:
    seen: set[str] = set()
    for table in feature_sets:
        if table.entity != entity:
            raise ValueError(
                f"feature set {table.name!r} is of entity {table.entity!r}, not {entity!r}"
            )
        names = {*table.feature_columns, table.timestamp_feature}
        if seen & names:
            raise ValueError(f"feature set {table.name!r} repeats columns {sorted(seen & names)}")
        seen |= names


@functools.cache
def _no_state(table: FeatureSetTable) -> Features:
    """What a key without stored state reads as (``no_state_values``), with no timestamp.

    Shared and cached: callers copy it (``dict.update``), never mutate it.
    """
    return {
        **dict(zip(table.feature_columns, table.no_state_values, strict=True)),
        table.timestamp_feature: None,
    }


def _empty_features(feature_sets: Sequence[FeatureSetTable]) -> Features:
    features: Features = {}
    for table in feature_sets:
        features.update(_no_state(table))
    return features


class OnlineStore(ABC):
    """Latest state per key for each feature set. Safe to share between threads."""

    @abstractmethod
    def write_latest(
        self,
        table: FeatureSetTable,
        rows: Iterable[Row],
        *,
        replace_until: datetime | None = None,
    ) -> int:
        """Upsert ``(key, timestamp, values)`` rows, streaming them in batches.

        ``values`` has one entry per feature column, converted by its type: a COUNT takes an
        integral number, an INT an integral number or None, a FLOAT any real number or None;
        NaN counts as None.

        A row is applied only if no state is stored for its key or the stored timestamp is not
        newer (an equal timestamp overwrites, so re-materializing a day replaces it), or, given
        ``replace_until``, the stored timestamp is not after it: a run that rewrote the days up
        to ``replace_until`` replaces what it knows is gone, even with an older state. The check
        runs atomically inside the store. Each batch is applied all-or-nothing; an invalid row
        raises ValueError and leaves its batch unapplied (earlier batches stay applied).

        Returns the number of rows applied, i.e. offered rows minus those skipped as stale.
        """

    @abstractmethod
    def get_features(
        self, entity: str, keys: Sequence[str], feature_sets: Sequence[FeatureSetTable]
    ) -> dict[str, Features]:
        """Read the latest state of ``keys``, returned in request order (duplicates collapse).

        Each key maps to every feature column of the requested sets (int, float or None, by
        column type) plus ``<feature set>__timestamp`` (aware UTC datetime, or None when
        nothing is stored, in which case the columns read as ``no_state_values``: 0 for a COUNT,
        None otherwise). Raises ValueError for an unknown entity.
        """

    @abstractmethod
    def keys(
        self,
        table: FeatureSetTable,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[str]:
        """Keys whose stored state is dated in [since, until] (either bound may be open)."""

    @abstractmethod
    def delete(
        self, table: FeatureSetTable, keys: Iterable[str], *, since: datetime, until: datetime
    ) -> int:
        """Remove the states of ``keys`` dated in [since, until] (atomically per key: a state a
        concurrent run wrote outside it stays); returns how many were removed."""

    @abstractmethod
    def latest_timestamp(self, table: FeatureSetTable) -> datetime | None:
        """Newest state timestamp stored in ``table``, or None if it is empty."""

    @abstractmethod
    def count(self, table: FeatureSetTable) -> int:
        """Number of keys with a stored state in ``table``."""

    @abstractmethod
    def mirrored(self, table: FeatureSetTable) -> dict[str, str]:
        """What `record_mirrored` recorded for ``table``: an opaque token per day."""

    @abstractmethod
    def record_mirrored(self, table: FeatureSetTable, tokens: Mapping[str, str]) -> None:
        """Remember which version of each of these days the store now mirrors (kept in the
        store itself, so a store emptied or replaced is known to mirror nothing)."""

    @abstractmethod
    def ping(self) -> None:
        """Raise if the store cannot answer a query."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_SQLITE_MIRRORED = "legiti#mirrored"
# Epoch seconds beyond any state's: open bounds of a timestamp range.
_NO_BOUND = 1 << 62


def _bounds(since: datetime | None, until: datetime | None) -> tuple[int, int]:
    return (
        -_NO_BOUND if since is None else to_epoch_seconds(since),
        _NO_BOUND if until is None else to_epoch_seconds(until),
    )


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
        for batch in _batches(rows, self.batch_size):
            params = [(key, ts, *values, until) for key, ts, values in _prepare(table, batch)]
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
        _check_request(entity, feature_sets)
        result = {key: _empty_features(feature_sets) for key in keys}
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
        bounds = _bounds(since, until)
        with self._lock:
            return [key for (key,) in self._conn.execute(self._prepared(table).keys, bounds)]

    def delete(
        self, table: FeatureSetTable, keys: Iterable[str], *, since: datetime, until: datetime
    ) -> int:
        bounds = _bounds(since, until)
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


# Applies a chunk of rows in order, each only if it is not older than the stored state (or the
# stored state is not after the replace-until bound).
# KEYS: the table's timestamp index (a sorted set of entity keys), then one state hash per row.
# ARGV: number of feature columns n, the n column names, the replace-until bound ("" for none),
# then per row: timestamp, n values (already encoded by _redis_encode; "" is a null and HSET
# stores it like any other string), entity key.
_REDIS_WRITE_LATEST = """
local n = tonumber(ARGV[1])
local replace_until = tonumber(ARGV[n + 2])
local fields = {'timestamp', false}
for c = 1, n do
  fields[2 * c + 1] = ARGV[c + 1]
end
local applied = 0
local pos = n + 3
for k = 2, #KEYS do
  local ts = tonumber(ARGV[pos])
  local stored = tonumber(redis.call('HGET', KEYS[k], 'timestamp'))
  if not stored or stored <= ts or (replace_until and stored <= replace_until) then
    fields[2] = ARGV[pos]
    for c = 1, n do
      fields[2 * c + 2] = ARGV[pos + c]
    end
    redis.call('HSET', KEYS[k], unpack(fields))
    redis.call('ZADD', KEYS[1], ts, ARGV[pos + n + 1])
    applied = applied + 1
  end
  pos = pos + n + 2
end
return applied
"""
# Removes the states dated in [ARGV[1], ARGV[2]]. KEYS: the timestamp index, then one state hash
# per key; ARGV[3..]: the entity keys.
_REDIS_DELETE = """
local low, high = tonumber(ARGV[1]), tonumber(ARGV[2])
local removed = 0
for k = 2, #KEYS do
  local stored = tonumber(redis.call('HGET', KEYS[k], 'timestamp'))
  if stored and stored >= low and stored <= high then
    redis.call('DEL', KEYS[k])
    redis.call('ZREM', KEYS[1], ARGV[k + 1])
    removed = removed + 1
  end
end
return removed
"""
# Rows per script call: big enough to amortize per-command overhead, small enough that Redis is
# never blocked for more than a few milliseconds.
_REDIS_ROWS_PER_CALL = 500


def _redis_encode(value: FeatureValue) -> str:
    # Encoded here rather than by redis-py so the stored format does not hang on its encoder;
    # repr of a float is the shortest string that parses back to the same float.
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def _decode_count(raw: bytes) -> int:
    # A COUNT is never stored null, so "" is an error here rather than None.
    return int(raw)


def _decode_int(raw: bytes) -> int | None:
    return None if raw == b"" else int(raw)


def _decode_float(raw: bytes) -> float | None:
    return None if raw == b"" else float(raw)


_REDIS_DECODERS: dict[str, Callable[[bytes], FeatureValue]] = {
    COUNT: _decode_count,
    INT: _decode_int,
    FLOAT: _decode_float,
}


class RedisOnlineStore(OnlineStore):
    """One Redis hash per (feature set, key); the conditional upsert is a server-side Lua script.

    Each table's index of keys by state timestamp is a sorted set at
    ``<prefix>:#meta:<feature set>:by_timestamp`` (``#`` cannot appear in a feature set name, so
    it never collides with state hashes); it makes ``count``, ``latest_timestamp`` and ``keys``
    cheap and assumes nothing else writes state hashes under the prefix. A store written before
    the index existed gets it built on first use.
    """

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "legiti",
        batch_size: int = DEFAULT_BATCH_SIZE,
        socket_timeout_s: float = 5.0,
    ) -> None:
        if not _REDIS_PREFIX.fullmatch(key_prefix):
            raise ValueError(
                f"invalid Redis key prefix {key_prefix!r}: must match {_REDIS_PREFIX.pattern}"
            )
        self.key_prefix = key_prefix
        self.batch_size = batch_size
        # Timeouts keep a dead Redis from hanging request threads forever.
        self._client = redis.Redis.from_url(
            url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s
        )
        self._write_script = self._client.register_script(_REDIS_WRITE_LATEST)
        self._delete_script = self._client.register_script(_REDIS_DELETE)
        self._indexed: set[str] = set()

    def state_key(self, table: FeatureSetTable, key: str) -> str:
        return f"{self.key_prefix}:{table.name}:{key}"

    def _index(self, table: FeatureSetTable) -> str:
        """The table's timestamp index, built from its state hashes if the store predates it."""
        meta = f"{self.key_prefix}:#meta:{table.name}"
        index = f"{meta}:by_timestamp"
        if table.name in self._indexed:
            return index
        # a marker, not the index's existence: an emptied sorted set disappears from Redis
        if not self._client.exists(f"{meta}:indexed"):
            prefix = f"{self.key_prefix}:{table.name}:"
            for names in _batches(self._client.scan_iter(f"{prefix}*", count=1000), 500):
                with self._client.pipeline(transaction=False) as pipe:
                    for name in names:
                        pipe.hget(name, TIMESTAMP_FIELD)
                    stamps = pipe.execute()
                members = {
                    name.decode()[len(prefix) :]: int(ts)
                    for name, ts in zip(names, stamps, strict=True)
                    if ts is not None
                }
                if members:
                    # NX: what a concurrent writer indexed meanwhile is newer than this scan
                    self._client.zadd(index, members, nx=True)
            # marked only once complete: a build that dies is redone by the next process
            self._client.delete(f"{meta}:count", f"{meta}:latest")
            self._client.set(f"{meta}:indexed", 1)
        self._indexed.add(table.name)
        return index

    def write_latest(
        self,
        table: FeatureSetTable,
        rows: Iterable[Row],
        *,
        replace_until: datetime | None = None,
    ) -> int:
        index = self._index(table)
        until = "" if replace_until is None else to_epoch_seconds(replace_until)
        applied = 0
        for batch in _batches(rows, self.batch_size):
            prepared = _prepare(table, batch)
            # MULTI/EXEC: the batch is applied in full or (if we die before EXEC) not at all.
            with self._client.pipeline(transaction=True) as pipe:
                for start in range(0, len(prepared), _REDIS_ROWS_PER_CALL):
                    chunk = prepared[start : start + _REDIS_ROWS_PER_CALL]
                    keys = [index]
                    args: list[str | int] = [
                        len(table.feature_columns),
                        *table.feature_columns,
                        until,
                    ]
                    for key, ts, values in chunk:
                        keys.append(self.state_key(table, key))
                        args.append(ts)
                        args.extend(map(_redis_encode, values))
                        args.append(key)
                    self._write_script(keys=keys, args=args, client=pipe)
                applied += sum(int(r) for r in pipe.execute())
        return applied

    def keys(
        self,
        table: FeatureSetTable,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[str]:
        index = self._index(table)
        low, high = _bounds(since, until)
        found: list[str] = []
        page = 100_000
        while True:
            members = self._client.zrangebyscore(index, low, high, start=len(found), num=page)
            found.extend(m.decode() for m in members)
            if len(members) < page:
                return found

    def delete(
        self, table: FeatureSetTable, keys: Iterable[str], *, since: datetime, until: datetime
    ) -> int:
        index = self._index(table)
        low, high = _bounds(since, until)
        removed = 0
        for names in _batches(keys, _REDIS_ROWS_PER_CALL):
            removed += int(
                self._delete_script(
                    keys=[index, *(self.state_key(table, k) for k in names)],
                    args=[low, high, *names],
                )
            )
        return removed

    def get_features(
        self, entity: str, keys: Sequence[str], feature_sets: Sequence[FeatureSetTable]
    ) -> dict[str, Features]:
        _check_request(entity, feature_sets)
        unique = list(dict.fromkeys(keys))
        if not unique:
            return {}
        fields = {table: [TIMESTAMP_FIELD, *table.feature_columns] for table in feature_sets}
        decoders = {
            table: [_REDIS_DECODERS[t] for t in table.feature_types] for table in feature_sets
        }
        # One round trip for every (key, feature set); plain pipeline, reads need no MULTI.
        with self._client.pipeline(transaction=False) as pipe:
            for key in unique:
                for table in feature_sets:
                    pipe.hmget(self.state_key(table, key), fields[table])
            replies = iter(pipe.execute())
        result: dict[str, Features] = {}
        for key in unique:
            features: Features = {}
            for table in feature_sets:
                ts, *raw = next(replies)
                if ts is None:
                    features.update(_no_state(table))
                    continue
                # HMGET gives None for a missing field; a stored null is b"".
                if None in raw:
                    raise ValueError(
                        f"stored state {self.state_key(table, key)!r} lacks some of "
                        f"{table.feature_columns}; re-materialize the feature set"
                    )
                try:
                    values = [decode(r) for decode, r in zip(decoders[table], raw, strict=True)]
                except ValueError as exc:
                    raise ValueError(
                        f"stored state {self.state_key(table, key)!r} does not match the types "
                        f"{table.feature_types}: {exc}; re-materialize the feature set"
                    ) from exc
                features.update(zip(table.feature_columns, values, strict=True))
                features[table.timestamp_feature] = from_epoch_seconds(int(ts))
            result[key] = features
        return result

    def latest_timestamp(self, table: FeatureSetTable) -> datetime | None:
        newest = self._client.zrange(self._index(table), -1, -1, withscores=True)
        return from_epoch_seconds(int(newest[0][1])) if newest else None

    def count(self, table: FeatureSetTable) -> int:
        return int(self._client.zcard(self._index(table)))

    def mirrored(self, table: FeatureSetTable) -> dict[str, str]:
        stored = self._client.hgetall(f"{self.key_prefix}:#meta:{table.name}:mirrored")
        return {day.decode(): token.decode() for day, token in stored.items()}

    def record_mirrored(self, table: FeatureSetTable, tokens: Mapping[str, str]) -> None:
        if tokens:
            self._client.hset(f"{self.key_prefix}:#meta:{table.name}:mirrored", mapping=tokens)

    def ping(self) -> None:
        self._client.ping()

    def close(self) -> None:
        self._client.close()


def open_online_store(url: str, *, redis_key_prefix: str = "legiti") -> OnlineStore:
    """Open a store from a URL.

    * ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or a plain path: SQLite.
    * ``redis://host:port/db`` (or ``rediss://``): Redis, keys under ``redis_key_prefix``.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError("online store URL is empty")
    scheme, sep, rest = url.partition("://")
    if not sep:
        return SQLiteOnlineStore(url)
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise ValueError(
                f"bad SQLite URL {url!r}: use sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db"
            )
        return SQLiteOnlineStore(rest[1:])
    if scheme in ("redis", "rediss"):
        return RedisOnlineStore(url, key_prefix=redis_key_prefix)
    raise ValueError(
        f"unsupported online store URL {url!r}: expected sqlite:///path.db, a file path, "
        "or redis://host:port/db"
    )
