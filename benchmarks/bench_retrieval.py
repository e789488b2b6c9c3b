"""`legiti_assets.get_historical_features` both ways on one spine, each in its own process:
the pandas path (a pandas spine in, a pandas DataFrame out, no JVM) and the Spark path (a
Spark spine in, its result written in full), over a store `make bench` built.

    python -m benchmarks.bench_retrieval --data-dir benchmarks/data/1m --rows 1000000

The spine: `--rows` orders drawn with replacement from the store's order_events (cpf and the
order's time, on days every feature set covers), numbered by `spine_row`; it is written once as
a Parquet file both processes read before their clocks start. Timed: the call alone for
pandas (its result is in memory when it returns); the call plus writing the result as Parquet
for Spark (a lazy DataFrame is computed only by an action, and writing every column is the one
that cannot skip any of the work). Both results must be equal row for row (`compare`) before
any time is kept. `make bench` runs this for sizes of 1m orders and up (or with --retrieval).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks import measure
from legiti_assets.synthetic import DEFAULT_SEED

FEATURE_SETS = ["user_orders", "user_chargebacks"]
KEY, TIME, ROW = "cpf", "order_timestamp", "spine_row"
ENGINES = ("pandas", "spark")


def write_spine(data_dir: Path, rows: int, seed: int, out: Path) -> int:
    """Write `rows` orders drawn from the store at `data_dir` as the spine file `out`; returns
    how many orders they were drawn from."""
    from legiti_assets import layout, storage
    from legiti_assets.catalog import SPECS
    from legiti_assets.pit_join import covered_until

    orders = storage.log(data_dir / layout.raw_table("order_events")).to_pyarrow_table(
        columns=[KEY, TIME]
    )
    covered = covered_until(data_dir, [SPECS[n] for n in FEATURE_SETS])
    if covered < dt.date.max:
        # a later row would be refused: its state is not stored yet
        end = dt.datetime.combine(covered + dt.timedelta(days=1), dt.time(), dt.UTC)
        orders = orders.filter(pc.less(orders.column(TIME), pa.scalar(end, orders[TIME].type)))
    if not orders.num_rows:
        raise SystemExit(f"{data_dir}: no stored order to draw a spine from")
    picked = np.random.default_rng(seed).integers(0, orders.num_rows, size=rows)
    spine = orders.take(pa.array(picked))
    spine = spine.add_column(0, ROW, pa.array(np.arange(rows, dtype=np.int64)))
    pq.write_table(spine, out)
    return orders.num_rows


def _jvm_running() -> bool:
    """Whether this process or a descendant runs a JVM (pyspark starts `java` as a child)."""
    from pyspark import SparkContext

    if SparkContext._gateway is not None:
        return True
    tree, todo = measure._children(), [os.getpid()]
    while todo:
        pid = todo.pop()
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "java":
                return True
        except OSError:
            pass
        todo += tree.get(pid, [])
    return False


def run_engine(engine: str, data_dir: Path, spine_file: Path, out: Path, partitions: int) -> None:
    """In the child: one call of `get_historical_features` on the spine, timed; its result is
    written to `out` for `compare`."""
    from legiti_assets import get_historical_features

    report: dict[str, float | int | bool] = {}
    if engine == "pandas":
        import pandas as pd

        spine = pd.read_parquet(spine_file)
        tick = time.perf_counter()
        result = get_historical_features(spine, FEATURE_SETS, timestamp=TIME, data_dir=data_dir)
        report["seconds"] = time.perf_counter() - tick
        report["rows"] = len(result)
        tick = time.perf_counter()
        result.to_parquet(out, index=False)
        report["write_seconds"] = time.perf_counter() - tick
        report["jvm"] = _jvm_running()  # the pandas path's promise: checked, not assumed
    else:
        from legiti_assets.resources import SparkResource

        spark = SparkResource(shuffle_partitions=partitions).spark_session
        spine = spark.read.parquet(str(spine_file)).cache()
        report["rows"] = spine.count()  # in memory before the clock starts, as pandas' is
        tick = time.perf_counter()
        joined = get_historical_features(spine, FEATURE_SETS, timestamp=TIME, data_dir=data_dir)
        joined.write.mode("overwrite").parquet(str(out))
        report["seconds"] = time.perf_counter() - tick
        spark.stop()
    measure.report(report)


def compare(pandas_out: Path, spark_out: Path) -> dict[str, int]:
    """Rows of one result not in the other, each way, as multisets (timestamps as naive UTC:
    pandas writes nanoseconds, Spark microseconds); raises unless both are empty."""
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    columns = [c[0] for c in con.execute(f"describe from read_parquet('{pandas_out}')").fetchall()]
    selected = ", ".join(
        f'"{c}"::timestamp as "{c}"' if "timestamp" in c or c.endswith("__asof") else f'"{c}"'
        for c in columns
    )
    pandas_rows = f"select {selected} from read_parquet('{pandas_out}')"
    spark_rows = f"select {selected} from read_parquet('{spark_out}/*.parquet')"
    count = lambda sql: con.execute(f"select count(*) from ({sql})").fetchall()[0][0]  # noqa: E731
    diff = {
        "rows": count(pandas_rows),
        "spark_rows": count(spark_rows),
        "only_pandas": count(f"{pandas_rows} except all {spark_rows}"),
        "only_spark": count(f"{spark_rows} except all {pandas_rows}"),
    }
    con.close()
    if diff["rows"] != diff["spark_rows"] or diff["only_pandas"] or diff["only_spark"]:
        raise SystemExit(f"get_historical_features: the pandas and Spark results differ: {diff}")
    return diff


def bench(data_dir: Path, rows: int, seed: int, cap: float, partitions: int = 8) -> dict:
    """Both paths on one spine of `rows` rows over the store at `data_dir`, each a whole
    process; their times, whole-process times and peak RSS, once their results are equal."""
    work = data_dir / "retrieval"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    spine = work / "spine.parquet"
    drawn_from = write_spine(data_dir, rows, seed, spine)
    found: dict = {"rows": rows, "orders": drawn_from}
    for engine in ENGINES:
        command = [sys.executable, "-m", "benchmarks.bench_retrieval", "--engine", engine]
        command += ["--data-dir", str(data_dir), "--spine", str(spine)]
        command += ["--out", str(work / engine), "--shuffle-partitions", str(partitions)]
        done = measure.run(command, cap)
        if done.returncode != 0:
            print(done.output[-5000:], file=sys.stderr)
            failed = "capped" if done.capped else done.returncode
            raise SystemExit(f"get_historical_features, {engine} path, failed ({failed})")
        found[engine] = {
            **done.result,
            "process_seconds": done.seconds,
            "peak_rss_bytes": done.peak_rss_bytes,
            "load": round(os.getloadavg()[0], 1),
        }
    if found["pandas"]["jvm"]:
        raise SystemExit("get_historical_features, pandas path: a JVM was started")
    compare(work / "pandas", work / "spark")
    shutil.rmtree(work)
    return found


def summary(found: dict) -> str:
    pandas, spark = found["pandas"], found["spark"]
    return (
        f"get_historical_features, {found['rows']:,}-row spine: pandas {pandas['seconds']:.2f} s "
        f"(process {pandas['process_seconds']:.1f} s, no JVM), Spark {spark['seconds']:.2f} s "
        f"(process {spark['process_seconds']:.1f} s): Spark / pandas "
        f"{spark['seconds'] / pandas['seconds']:.2f}x, equal results"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="a store `make bench` built")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--cap", type=float, default=1800, help="seconds per process")
    parser.add_argument("--shuffle-partitions", type=int, default=8)
    parser.add_argument("--engine", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--spine", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.engine:
        run_engine(args.engine, args.data_dir, args.spine, args.out, args.shuffle_partitions)
        return
    found = bench(args.data_dir, args.rows, args.seed, args.cap, args.shuffle_partitions)
    print(summary(found))


if __name__ == "__main__":
    main()
