"""butterfree's own path for the same declarations: `AggregatedFeatureSet.construct`.

    uv run python -m benchmarks.stock_butterfree DATA_DIR START END OUT_DIR

Reads the landing CSV with Spark (same session settings as the assets), builds `user_orders`
and `user_chargebacks` from `legiti_assets/feature_sets/user.py` with butterfree's
`construct(dataframe, client=SparkClient(), start_date=START, end_date=END + 1 day)` and writes
them as Parquet under OUT_DIR/<name>. `benchmarks/bench.py` runs it in a subprocess with a time
cap and measures the process tree's memory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

from butterfree.clients import SparkClient
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from benchmarks import measure
from legiti_assets.feature_sets import user_chargebacks, user_orders
from legiti_assets.resources import SparkResource

TS_FORMAT = "yyyy-MM-dd HH:mm:ss"


def read_events(spark: SparkSession, landing: Path) -> DataFrame:
    raw = spark.read.csv(
        str(landing),
        header=True,
        schema="order_id string, order_timestamp string, cpf string, chargeback_timestamp string",
    )
    return raw.select(
        "order_id",
        F.to_timestamp("order_timestamp", TS_FORMAT).alias("order_timestamp"),
        "cpf",
        F.to_timestamp("chargeback_timestamp", TS_FORMAT).alias("chargeback_timestamp"),
    ).dropDuplicates()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("start", type=dt.date.fromisoformat)
    parser.add_argument("end", type=dt.date.fromisoformat)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--shuffle-partitions", type=int, default=8)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    spark = SparkResource(shuffle_partitions=args.shuffle_partitions).spark_session
    seconds = {"spark_start": time.perf_counter() - began}
    events = read_events(spark, args.data_dir / "order_events" / "input.csv").cache()
    events.count()
    client = SparkClient()
    sources = {
        user_orders: events,
        user_chargebacks: events.where(F.col("chargeback_timestamp").isNotNull()),
    }
    for feature_set, source in sources.items():
        tick = time.perf_counter()
        rows = feature_set.construct(
            source,
            client=client,
            start_date=str(args.start),
            end_date=str(args.end + dt.timedelta(days=1)),
        )
        rows.write.mode("overwrite").parquet(str(args.out_dir / feature_set.name))
        seconds[feature_set.name] = time.perf_counter() - tick
    seconds["total"] = time.perf_counter() - began
    measure.report(seconds)


if __name__ == "__main__":
    main()
