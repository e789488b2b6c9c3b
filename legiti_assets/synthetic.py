"""Synthetic landing files of order events, for benchmarks and load tests.

    uv run python -m legiti_assets.synthetic --size 1m --seed 7 --data-dir benchmarks/data/1m

writes `<data-dir>/order_events/input.csv` in the landing format and prints the START and END
days covering it, for `make awesome-dataset START=... END=...`.

The shape: `orders / 5` users, each with at least one order; the rest are spread over users with
lognormal (heavy-tailed) weights. Each user is active around a day of its own, so its orders
cluster in time; order times follow a daily rhythm (quiet nights, busy afternoons and evenings).
About 2% of orders get a chargeback 1 to 90 days later, possibly after the last order day.
Everything is drawn from one seed: the same size and seed give the same file, byte for byte.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from legiti_assets import layout

END_DAY = dt.date(2020, 7, 17)
DEFAULT_SEED = 20200717
CHARGEBACK_RATE = 0.02
COLUMNS = ("order_id", "order_timestamp", "cpf", "chargeback_timestamp")
# relative weight of each UTC hour of the day: quiet nights, busy afternoons and evenings
HOURLY = np.array(
    [2, 1, 1, 1, 1, 2, 3, 5, 7, 8, 9, 10, 11, 11, 10, 10, 10, 11, 12, 13, 12, 9, 6, 4]
)
CPF_MULTIPLIER = 7_919_000_003  # odd, not a multiple of 5: i -> i * M mod 10**11 is a bijection


@dataclass(frozen=True)
class Size:
    orders: int
    days: int

    @property
    def users(self) -> int:
        return max(1, self.orders // 5)


SIZES = {
    "10k": Size(10_000, 365),
    "100k": Size(100_000, 730),
    "1m": Size(1_000_000, 730),
    "10m": Size(10_000_000, 730),
    "30m": Size(30_000_000, 730),
}


def day_range(size: Size, end: dt.date = END_DAY) -> tuple[dt.date, dt.date]:
    """(START, END): the first and last days orders can fall on."""
    return end - dt.timedelta(days=size.days - 1), end


def generate(size: Size, seed: int = DEFAULT_SEED, end: dt.date = END_DAY) -> pa.Table:
    """The landing rows as strings (chargeback_timestamp null when none), sorted by order time."""
    rng = np.random.default_rng(seed)
    n, users = size.orders, size.users
    # every user orders once; the other orders go to users in proportion to heavy-tailed weights
    weights = rng.lognormal(mean=0.0, sigma=1.5, size=users)
    extra = rng.choice(users, size=n - users, p=weights / weights.sum())
    user = np.concatenate([np.arange(users), extra])
    # each user is active around a day of its own, some for weeks, some for months
    center = rng.integers(0, size.days, size=users)
    spread = rng.exponential(scale=45.0, size=users) + 1.0
    offset = np.rint(rng.normal(0.0, 1.0, size=n) * spread[user]).astype(np.int64)
    day = (center[user] + offset) % size.days  # wrap around: days stay evenly busy
    hour = rng.choice(24, size=n, p=HOURLY / HOURLY.sum())
    second_of_day = hour * 3600 + rng.integers(0, 3600, size=n)
    first = np.datetime64(day_range(size, end)[0], "s")
    order_ts = first + (day * 86400 + second_of_day).astype("timedelta64[s]")
    # chargebacks: about 2% of orders, 1 to 90 days after the order
    charged = rng.random(n) < CHARGEBACK_RATE
    delay = rng.integers(86400, 90 * 86400 + 1, size=n).astype("timedelta64[s]")
    chargeback_ts = np.where(charged, order_ts + delay, np.datetime64("NaT"))

    by_time = np.argsort(order_ts, kind="stable")
    cpf = (user[by_time].astype(np.int64) * CPF_MULTIPLIER + seed) % 10**11
    return pa.table(
        {
            "order_id": pc.binary_join_element_wise("o", _digits(np.arange(n), 9), ""),
            "order_timestamp": _text(order_ts[by_time]),
            "cpf": _digits(cpf, 11),
            "chargeback_timestamp": _text(chargeback_ts[by_time]),
        }
    )


def _digits(numbers: np.ndarray, width: int) -> pa.Array:
    """Zero-padded decimal strings."""
    return pc.utf8_lpad(pa.array(numbers).cast(pa.string()), width, "0")


def _text(times: np.ndarray) -> pa.Array:
    """`YYYY-MM-DD HH:MM:SS`, null for NaT."""
    return pa.array(times, type=pa.timestamp("s"), from_pandas=True).cast(pa.string())


def write_landing(table: pa.Table, data_dir: Path) -> Path:
    """Write `table` to `<data_dir>/order_events/input.csv`, unquoted, nulls as empty fields."""
    path = data_dir / layout.LANDING_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    with path.open("wb") as out:
        out.write((",".join(COLUMNS) + "\n").encode())
        pacsv.write_csv(table.select(list(COLUMNS)), out, write_options=options)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="10k")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    started = time.perf_counter()
    path = write_landing(generate(size, args.seed), args.data_dir)
    start, end = day_range(size)
    print(
        f"{path}: {size.orders} orders, {size.users} users, {size.days} days, "
        f"seed {args.seed}, in {time.perf_counter() - started:.1f} s"
    )
    print(f"START={start} END={end}")


if __name__ == "__main__":
    main()
