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

Rows are written one by one with ``write_latest``, or in bulk with ``load`` (Arrow batches, the
same rule and conversions), which Spark's executors run on their partitions when the backend
offers a ``partition_writer`` (Redis).

Backends implement ``OnlineStore`` (``base.py``); ``open_online_store`` picks one from a URL:

* ``SQLiteOnlineStore`` (``sqlite.py``): one file, one table per feature set.
* ``RedisOnlineStore`` (``redis.py``): one hash per (feature set, key).

Timestamps: aware datetimes are converted to UTC; naive datetimes are taken to already be UTC
(what Spark's ``toPandas()`` yields with ``spark.sql.session.timeZone=UTC``). Reads return aware
UTC datetimes. Precision is one second, which is plenty for daily states.

``values.py`` holds the column types and value conversions; ``server.py`` serves the store over
HTTP.
"""

from __future__ import annotations

from legiti_assets.online.base import Loaded, OnlineStore
from legiti_assets.online.redis import RedisOnlineStore
from legiti_assets.online.sqlite import SQLiteOnlineStore
from legiti_assets.online.values import COUNT, FLOAT, INT, Features, FeatureSetTable, Row

__all__ = [
    "COUNT",
    "FLOAT",
    "INT",
    "FeatureSetTable",
    "Features",
    "Loaded",
    "OnlineStore",
    "RedisOnlineStore",
    "Row",
    "SQLiteOnlineStore",
    "open_online_store",
]


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
