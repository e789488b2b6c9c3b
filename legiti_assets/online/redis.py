"""Redis online store: one hash per (feature set, key) at ``<prefix>:<feature set>:<key>`` with
the feature columns plus ``timestamp`` (epoch seconds); per-table bookkeeping (row count and
newest timestamp) lives at ``<prefix>:#meta:<feature set>:{count,latest}``. Values are strings:
``str(int)``, ``repr(float)`` (which parses back to the same float), and "" for null."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# redis-py, not this module: imports are absolute (only putting legiti_assets/online itself on
# sys.path, e.g. running a file of it by path, would shadow it)
import redis

from legiti_assets.online.base import (
    DEFAULT_BATCH_SIZE,
    Loaded,
    OnlineStore,
    batches,
    check_request,
    epoch_bounds,
    load_counts,
    per_timestamp,
)
from legiti_assets.online.values import (
    COUNT,
    FLOAT,
    INT,
    TIMESTAMP_FIELD,
    Features,
    FeatureSetTable,
    FeatureValue,
    Row,
    arrow_states,
    from_epoch_seconds,
    no_state,
    prepare,
    to_epoch_seconds,
)

# Redis prefixes are matched with SCAN globs by tools and tests, so keep them glob- and colon-free.
_REDIS_PREFIX = re.compile(r"^[A-Za-z0-9_.-]+$")

# Applies a chunk of rows in order, each only if it is not older than the stored state (or the
# stored state is not after the replace-until bound), and returns which it applied: a string of
# one "1" (applied) or "0" per row.
# KEYS: the table's timestamp index (a sorted set of entity keys), then one state hash per row.
# ARGV: number of feature columns n, the n column names, the replace-until bound ("" for none),
# then per row: timestamp, n values (already encoded by _redis_encode; "" is a null and HSET
# stores it like any other string), entity key.
# The index takes the applied rows in one ZADD (in row order, so of a key applied twice the
# last state's score stays): unpack() is limited to 8000 values, 4000 rows.
_REDIS_WRITE_LATEST = """
local n = tonumber(ARGV[1])
local replace_until = tonumber(ARGV[n + 2])
local fields = {'timestamp', false}
for c = 1, n do
  fields[2 * c + 1] = ARGV[c + 1]
end
local scored = {}
local flags = {}
local pos = n + 3
for k = 2, #KEYS do
  local ts = ARGV[pos]
  local stored = tonumber(redis.call('HGET', KEYS[k], 'timestamp'))
  if not stored or stored <= tonumber(ts) or (replace_until and stored <= replace_until) then
    fields[2] = ts
    for c = 1, n do
      fields[2 * c + 2] = ARGV[pos + c]
    end
    redis.call('HSET', KEYS[k], unpack(fields))
    scored[#scored + 1] = ts
    scored[#scored + 1] = ARGV[pos + n + 1]
    flags[k - 1] = '1'
  else
    flags[k - 1] = '0'
  end
  pos = pos + n + 2
end
if #scored > 0 then
  redis.call('ZADD', KEYS[1], unpack(scored))
end
return table.concat(flags)
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
# Rows a load sends before reading the replies: 20 script calls per round trip.
_REDIS_ROWS_PER_ROUND_TRIP = 20 * _REDIS_ROWS_PER_CALL


def _redis_encode(value: FeatureValue) -> str:
    # Encoded here rather than by redis-py so the stored format does not hang on its encoder;
    # repr of a float is the shortest string that parses back to the same float.
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def _arrow_encode(kind: str, values: pa.Array) -> pa.Array:
    """A column of `arrow_states` as _redis_encode writes each value."""
    if kind == FLOAT:
        # Arrow writes 1.0 as "1": repr keeps one format for every writer
        return pa.array([_redis_encode(v) for v in values.to_pylist()], pa.string())
    return pc.fill_null(values.cast(pa.string()), "")


def _state_key_prefix(key_prefix: str, table: FeatureSetTable) -> str:
    return f"{key_prefix}:{table.name}:"


def _meta(key_prefix: str, table: FeatureSetTable) -> str:
    return f"{key_prefix}:#meta:{table.name}"


def _index_key(key_prefix: str, table: FeatureSetTable) -> str:
    return f"{_meta(key_prefix, table)}:by_timestamp"


# A load packs its commands itself, column by column in Arrow, rather than through redis-py's
# encoder, which handles each argument in Python: six per state. Commands are RESP arrays of
# bulk strings, `*<count>\r\n` then `$<bytes>\r\n<bytes>\r\n` per argument.
def _bulk(value: str) -> bytes:
    data = value.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _bulks(values: pa.Array) -> pa.Array:
    lengths = pc.binary_length(values).cast(pa.string())
    return pc.binary_join_element_wise("$", lengths, "\r\n", values, "\r\n", "")


def _joined(segments: pa.Array, size: int) -> list[bytes]:
    """The segments concatenated in consecutive groups of `size` (the last may be shorter)."""
    starts = pa.array([*range(0, len(segments), size), len(segments)], pa.int32())
    groups = pa.ListArray.from_arrays(starts, segments)
    return pc.binary_join(groups, "").cast(pa.binary()).to_pylist()


@dataclass(frozen=True)
class RedisLoader:
    """Loads Arrow batches of states into one table and yields their LOAD_COUNTS, through its
    own connection: `RedisOnlineStore.load` runs it here, Spark's executors each on their
    partitions. It holds only strings and numbers, so it pickles."""

    url: str
    key_prefix: str
    table: FeatureSetTable
    replace_until: int | None
    socket_timeout_s: float

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        offered, applied = Counter[int](), Counter[int]()
        client = redis.Redis.from_url(
            self.url,
            socket_timeout=self.socket_timeout_s,
            socket_connect_timeout=self.socket_timeout_s,
        )
        try:
            # loaded on every call: an executor's Redis may have been restarted since
            sha = client.script_load(_REDIS_WRITE_LATEST)
            connection = client.connection_pool.get_connection()
            try:
                for batch in batches:
                    states = arrow_states(self.table, batch)
                    offered.update(per_timestamp(states.column(TIMESTAMP_FIELD)))
                    for start in range(0, states.num_rows, _REDIS_ROWS_PER_ROUND_TRIP):
                        rows = states.slice(start, _REDIS_ROWS_PER_ROUND_TRIP)
                        commands = self._commands(sha, rows)
                        connection.send_packed_command(commands)
                        # the calls' flags, in the order of their rows
                        flags = b"".join(connection.read_response() for _ in commands)
                        took = np.frombuffer(flags, np.uint8) == ord("1")
                        applied.update(per_timestamp(rows.column(TIMESTAMP_FIELD).filter(took)))
            finally:
                # after an error replies may be left unread: the connection goes, not back
                connection.disconnect()
        finally:
            client.close()
        yield load_counts(offered, applied)

    def _commands(self, sha: str, states: pa.RecordBatch) -> list[bytes]:
        """One EVALSHA of _REDIS_WRITE_LATEST per _REDIS_ROWS_PER_CALL states, packed."""
        table, n = self.table, len(self.table.feature_columns)
        keys = states.column(table.key)
        hashes = pc.binary_join_element_wise(_state_key_prefix(self.key_prefix, table), keys, "")
        values = [
            _bulks(_arrow_encode(kind, states.column(column)))
            for column, kind in zip(table.feature_columns, table.feature_types, strict=True)
        ]
        stamps = _bulks(states.column(TIMESTAMP_FIELD).cast(pa.string()))
        args = pc.binary_join_element_wise(stamps, *values, _bulks(keys), "")
        until = "" if self.replace_until is None else str(self.replace_until)
        fixed = b"".join(_bulk(a) for a in (str(n), *table.feature_columns, until))
        head = _bulk("EVALSHA") + _bulk(sha)
        index = _bulk(_index_key(self.key_prefix, table))
        commands = []
        chunks = zip(
            range(0, len(keys), _REDIS_ROWS_PER_CALL),
            _joined(_bulks(hashes), _REDIS_ROWS_PER_CALL),
            _joined(args, _REDIS_ROWS_PER_CALL),
            strict=True,
        )
        for start, chunk_hashes, chunk_args in chunks:
            rows = min(_REDIS_ROWS_PER_CALL, len(keys) - start)
            count = 2 + 1 + (1 + rows) + (n + 2) + rows * (n + 2)
            commands.append(
                b"*%d\r\n" % count
                + head
                + _bulk(str(1 + rows))
                + index
                + chunk_hashes
                + fixed
                + chunk_args
            )
        return commands


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
        self._url = url
        self._socket_timeout_s = socket_timeout_s
        # Timeouts keep a dead Redis from hanging request threads forever.
        self._client = redis.Redis.from_url(
            url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s
        )
        self._write_script = self._client.register_script(_REDIS_WRITE_LATEST)
        self._delete_script = self._client.register_script(_REDIS_DELETE)
        self._indexed: set[str] = set()

    def state_key(self, table: FeatureSetTable, key: str) -> str:
        return _state_key_prefix(self.key_prefix, table) + key

    def _index(self, table: FeatureSetTable) -> str:
        """The table's timestamp index, built from its state hashes if the store predates it."""
        meta = _meta(self.key_prefix, table)
        index = _index_key(self.key_prefix, table)
        if table.name in self._indexed:
            return index
        # a marker, not the index's existence: an emptied sorted set disappears from Redis
        if not self._client.exists(f"{meta}:indexed"):
            prefix = _state_key_prefix(self.key_prefix, table)
            for names in batches(self._client.scan_iter(f"{prefix}*", count=1000), 500):
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
        for batch in batches(rows, self.batch_size):
            prepared = prepare(table, batch)
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
                # each call's reply: a "1" per row applied, a "0" per row skipped
                applied += sum(flags.count(b"1") for flags in pipe.execute())
        return applied

    def partition_writer(
        self, table: FeatureSetTable, *, replace_until: datetime | None = None
    ) -> RedisLoader:
        self._index(table)  # built here, once, not by each executor
        return RedisLoader(
            url=self._url,
            key_prefix=self.key_prefix,
            table=table,
            replace_until=None if replace_until is None else to_epoch_seconds(replace_until),
            socket_timeout_s=self._socket_timeout_s,
        )

    def load(
        self,
        table: FeatureSetTable,
        batches: Iterable[pa.RecordBatch],
        *,
        replace_until: datetime | None = None,
    ) -> Loaded:
        """Each script call (500 states) is atomic; a failure leaves the calls before it
        applied (a retry applies them again: a state of equal timestamp overwrites)."""
        writer = self.partition_writer(table, replace_until=replace_until)
        return Loaded.of_batches(writer(iter(batches)))

    def keys(
        self,
        table: FeatureSetTable,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[str]:
        index = self._index(table)
        low, high = epoch_bounds(since, until)
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
        low, high = epoch_bounds(since, until)
        removed = 0
        for names in batches(keys, _REDIS_ROWS_PER_CALL):
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
        check_request(entity, feature_sets)
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
                    features.update(no_state(table))
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
        stored = self._client.hgetall(f"{_meta(self.key_prefix, table)}:mirrored")
        return {day.decode(): token.decode() for day, token in stored.items()}

    def record_mirrored(self, table: FeatureSetTable, tokens: Mapping[str, str]) -> None:
        if tokens:
            self._client.hset(f"{_meta(self.key_prefix, table)}:mirrored", mapping=tokens)

    def ping(self) -> None:
        self._client.ping()

    def close(self) -> None:
        self._client.close()
