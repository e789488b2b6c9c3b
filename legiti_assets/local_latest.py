"""Each key's newest stored state, read by DuckDB from a local Delta table's files.

A local online store (SQLite) is written by this process, so every state it takes crosses to
this machine anyway. Reading the stored rows here too spares Spark's scan and shuffle of every
row of the history, of which the store takes one per key. A table this reader cannot read
plainly (remote, partitioned, or with reader features such as deletion vectors or column
mapping) is left to Spark: `newest_states` returns None.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa

from legiti_assets import storage
from legiti_assets.engine import TIMESTAMP, FeatureSetSpec
from legiti_assets.locations import is_local

# The aggregation spills to a temporary directory beyond this, rather than growing the
# driver's memory by the size of the history's keys.
MEMORY_LIMIT = "256MB"
BATCH_ROWS = 100_000


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _midnight_us(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * 86_400_000_000


def newest_states(
    table: Path,
    spec: FeatureSetSpec,
    first: dt.date,
    last: dt.date,
    columns: list[str],
    as_of: int | None,
) -> Iterator[pa.RecordBatch] | None:
    """For each key with a stored row dated first..last at table version `as_of` (default: the
    latest), its newest such row: the key, `timestamp` in integer epoch seconds and `columns`,
    as Arrow batches in key order (what `OnlineStore.load` takes). None when the table is not
    one this reader can read plainly; no batch when it has no such row."""
    if not is_local(table) or not storage.is_delta(table):
        return None
    log = storage.log(table, as_of)
    protocol = log.protocol()
    if protocol.min_reader_version > 1 or protocol.reader_features:
        return None
    if log.metadata().partition_columns:
        return None
    files = log.file_uris()
    if not files:
        return iter(())
    return _batches(files, spec, first, last, columns)


def _batches(
    files: list[str], spec: FeatureSetSpec, first: dt.date, last: dt.date, columns: list[str]
) -> Iterator[pa.RecordBatch]:
    at = _q(TIMESTAMP)
    # `arg_max_null`: the newest row's nulls with it (`arg_max` skips a null argument); a key
    # has one row per timestamp, so every column comes from that row
    newest_values = "".join(f", arg_max_null({_q(c)}, {at}) AS {_q(c)}" for c in columns)
    since, until = _midnight_us(first), _midnight_us(last + dt.timedelta(days=1))
    # epoch seconds as Spark's cast of a timestamp to long gives them: floored (DuckDB's `%`
    # and `//` truncate towards zero)
    newest_us = f"max(epoch_us({at}))"
    seconds = f"({newest_us} - (({newest_us} % 1000000) + 1000000) % 1000000) // 1000000"
    # timestamps are stored UTC-adjusted: compared as instants, whatever the session's zone;
    # the bounds on the column itself prune row groups by their statistics
    query = f"""
        SELECT {_q(spec.key)}, {seconds} AS {at}{newest_values}
        FROM read_parquet($files, union_by_name = true)
        WHERE {at} >= make_timestamptz($since) AND {at} < make_timestamptz($until)
        GROUP BY {_q(spec.key)}
        ORDER BY {_q(spec.key)}  -- SQLite's B-tree of keys fills leaf after leaf
    """
    with tempfile.TemporaryDirectory(prefix="legiti-latest-") as spill, duckdb.connect() as con:
        con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
        con.execute("SET temp_directory = " + "'" + spill.replace("'", "''") + "'")
        params = {"files": files, "since": since, "until": until}
        yield from con.sql(query, params=params).to_arrow_reader(BATCH_ROWS)
