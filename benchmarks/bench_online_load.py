"""Time the online stores' bulk load of synthetic latest states (2M users by default: the 10m
sample's user_orders).

    uv run python benchmarks/bench_online_load.py [--users 2000000] [--redis-url URL] [--spark]

Each store is loaded twice: empty, then full (every state replaced by one of equal timestamp).
`store.load` runs in this process from Arrow batches; with --spark the same states go through
`load_latest` from a Spark DataFrame (Redis: written by the executors). SQLite runs in a temp
dir; Redis when --redis-url or LEGITI_BENCH_REDIS_URL is set, under a unique key prefix whose
keys are deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import redis

from legiti_assets.catalog import ONLINE_TABLES
from legiti_assets.online import Loaded, OnlineStore, RedisOnlineStore, SQLiteOnlineStore

TABLE = ONLINE_TABLES["user_orders"]
FIRST_DAY = 1_531_958_400  # 2018-07-19, the 10m sample's first day
BATCH_ROWS = 10_000  # what Spark's Arrow batches hold (maxRecordsPerBatch)


def states(users: int) -> list[pa.RecordBatch]:
    """One state per user, dated on one of 512 days, in a scattered key order (as Spark's hash
    partitions hand them over)."""
    ids = pa.array(np.random.default_rng(0).permutation(users))
    columns = {
        TABLE.key: pc.utf8_lpad(ids.cast(pa.string()), 11, "0"),
        "timestamp": pc.add(pc.multiply(pc.bit_wise_and(ids, 511), 86_400), FIRST_DAY),
        **{c: pc.bit_wise_and(pc.add(ids, i), 15) for i, c in enumerate(TABLE.feature_columns)},
    }
    return pa.table(columns).to_batches(max_chunksize=BATCH_ROWS)


def timed(label: str, load: Callable[[], Loaded]) -> None:
    started = time.perf_counter()
    loaded = load()
    seconds = time.perf_counter() - started
    rate = loaded.total_offered / seconds
    print(
        f"{label:<34} {loaded.total_offered:>9,} offered {loaded.total_applied:>9,} applied "
        f"{seconds:6.2f} s  {rate:>9,.0f} states/s",
        flush=True,
    )


def bench_store(name: str, store: OnlineStore, batches: list[pa.RecordBatch]) -> None:
    timed(f"{name} load, empty", lambda: store.load(TABLE, batches))
    timed(f"{name} load, full", lambda: store.load(TABLE, batches))


def bench_spark(name: str, store: OnlineStore, users: int) -> None:
    from pyspark.sql import functions as F

    from legiti_assets.assets.online import load_latest
    from legiti_assets.engine import TIMESTAMP
    from legiti_assets.resources import SparkResource

    spark = SparkResource().spark_session
    ids = F.col("id")
    latest = spark.range(users).select(
        F.lpad(ids.cast("string"), 11, "0").alias(TABLE.key),
        F.timestamp_seconds(F.lit(FIRST_DAY) + (ids % 512) * 86_400).alias(TIMESTAMP),
        *((((ids + i) % 16).alias(c)) for i, c in enumerate(TABLE.feature_columns)),
    )
    # the aggregation of `latest_per_key` hands over hash partitions: the same here
    latest = latest.repartition(8, TABLE.key).cache()
    latest.count()
    timed(f"{name} load_latest (Spark), empty", lambda: load_latest(store, TABLE, latest))
    timed(f"{name} load_latest (Spark), full", lambda: load_latest(store, TABLE, latest))
    latest.unpersist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2_000_000)
    parser.add_argument("--redis-url", default=os.environ.get("LEGITI_BENCH_REDIS_URL"))
    parser.add_argument("--spark", action="store_true", help="also load through Spark")
    args = parser.parse_args()
    started = time.perf_counter()
    batches = states(args.users)
    print(f"{args.users:,} states in {time.perf_counter() - started:.2f} s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        with SQLiteOnlineStore(Path(tmp) / "online.db") as store:
            bench_store("sqlite", store, batches)
        if args.spark:
            with SQLiteOnlineStore(Path(tmp) / "spark.db") as store:
                bench_spark("sqlite", store, args.users)
    if args.redis_url:
        prefix = f"legiti_bench_{uuid.uuid4().hex}"
        client = redis.Redis.from_url(args.redis_url)
        try:
            with RedisOnlineStore(args.redis_url, key_prefix=prefix) as store:
                bench_store("redis", store, batches)
            if args.spark:
                with RedisOnlineStore(args.redis_url, key_prefix=f"{prefix}_spark") as store:
                    bench_spark("redis", store, args.users)
        finally:
            for names in _scan(client, prefix):
                client.delete(*names)
            client.close()


def _scan(client: redis.Redis, prefix: str) -> list[list[bytes]]:
    names = list(client.scan_iter(match=f"{prefix}*", count=10_000))
    return [names[i : i + 10_000] for i in range(0, len(names), 10_000)]


if __name__ == "__main__":
    main()
