"""`make update` after a one-day drop, next to a full `make awesome-dataset`, on synthetic data.

    make bench-update SIZE=1m

In `benchmarks/data/update-<size>/`, each step a fresh process timed whole:

1. full:       `python -m legiti_assets.run` over every day up to the day after the newest
               event (what `make awesome-dataset` does), from an empty store;
2. no change:  `python -m legiti_assets.update` right after: it only checks;
3. new day:    a drop of one day of new orders (the day after the newest event), then update;
4. chargebacks: a drop of the next day's orders plus chargebacks reported that day for 0.1% of
               the orders of the last 90 order days (each restates its order: scattered days).

Prints each step's time, the load average beside it, and what the update printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from benchmarks import measure
from legiti_assets import synthetic

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HEADER = ",".join(synthetic.COLUMNS)


def _newest_day(table: pa.Table) -> dt.date:
    newest = max(
        pc.max(table.column("order_timestamp")).as_py(),
        pc.max(table.column("chargeback_timestamp")).as_py() or "",
    )
    return dt.date.fromisoformat(newest[:10])


def _day_orders(
    rng: np.random.Generator, day: dt.date, n: int, cpfs: pa.Array, first_id: int
) -> list[str]:
    seconds = np.sort(rng.integers(0, 86_400, size=n))
    users = rng.choice(len(cpfs), size=n)
    start = dt.datetime.combine(day, dt.time())
    return [
        f"n{first_id + i:09d},{start + dt.timedelta(seconds=int(s))},{cpfs[int(u)].as_py()},"
        for i, (s, u) in enumerate(zip(seconds, users, strict=True))
    ]


def _late_chargebacks(
    rng: np.random.Generator, table: pa.Table, day: dt.date, rate: float
) -> list[str]:
    """Orders of the last 90 order days without a chargeback, now reported on `day`."""
    newest_order = dt.date.fromisoformat(pc.max(table.column("order_timestamp")).as_py()[:10])
    since = str(newest_order - dt.timedelta(days=90))
    recent = table.filter(
        pc.and_(
            pc.greater_equal(table.column("order_timestamp"), since),
            pc.is_null(table.column("chargeback_timestamp")),
        )
    )
    picked = recent.take(rng.choice(recent.num_rows, size=max(1, int(recent.num_rows * rate))))
    at = dt.datetime.combine(day, dt.time(12))
    return [
        f"{o},{t},{c},{at}"
        for o, t, c in zip(
            picked.column("order_id").to_pylist(),
            picked.column("order_timestamp").to_pylist(),
            picked.column("cpf").to_pylist(),
            strict=True,
        )
    ]


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, str, str]:
    load = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
    return seconds, f"{load:.1f}", done.stdout


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(synthetic.SIZES), default="10k")
    parser.add_argument("--seed", type=int, default=synthetic.DEFAULT_SEED)
    args = parser.parse_args(argv)
    size = synthetic.SIZES[args.size]
    data_dir = HERE / "data" / f"update-{args.size}"
    table = synthetic.generate(size, args.seed)
    env = measure.fresh_data_dir(data_dir, table)
    start = synthetic.day_range(size)[0]
    newest = _newest_day(table)
    python = sys.executable
    rng = np.random.default_rng(args.seed)
    cpfs = pc.unique(table.column("cpf"))
    per_day = size.orders // size.days
    rows = []

    full = [python, "-m", "legiti_assets.run", "--start", str(start)]
    seconds, load, _ = _timed([*full, "--end", str(newest + dt.timedelta(days=1))], env)
    rows.append(("full build (make awesome-dataset)", seconds, load, ""))
    update = [python, "-m", "legiti_assets.update"]
    seconds, load, out = _timed(update, env)
    rows.append(("update, nothing changed", seconds, load, out))

    day = newest + dt.timedelta(days=1)
    drop = _day_orders(rng, day, per_day, cpfs, 0)
    (data_dir / "order_events" / f"later-{day}.csv").write_text("\n".join([HEADER, *drop, ""]))
    seconds, load, out = _timed(update, env)
    rows.append((f"update, one day of new orders ({len(drop)})", seconds, load, out))

    day += dt.timedelta(days=1)
    drop = _day_orders(rng, day, per_day, cpfs, per_day)
    late = _late_chargebacks(rng, table, day, 0.001)
    text = "\n".join([HEADER, *drop, *late, ""])
    (data_dir / "order_events" / f"later-{day}.csv").write_text(text)
    seconds, load, out = _timed(update, env)
    rows.append(
        (f"update, a day's orders ({len(drop)}) + {len(late)} late chargebacks", seconds, load, out)
    )

    print(f"\n{args.size}: {size.orders:,} orders, {size.days} days, newest event {newest}")
    print(f"{'step':<60} {'seconds':>8} {'load':>5}")
    for name, seconds, load, _ in rows:
        print(f"{name:<60} {seconds:8.1f} {load:>5}")
    for name, _, _, out in rows:
        if out:
            print(f"\n{name}:\n{out.strip()}")


if __name__ == "__main__":
    main()
