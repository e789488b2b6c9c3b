"""An independent DuckDB implementation of the semantics contract (README), from the landing CSV.

    uv run python -m benchmarks.duckdb_reference benchmarks/data/100k 2018-07-19 2020-07-17

It shares no code with `legiti_assets`. Two routes to the same rows:

- the default, timed one: an event of day d enters every window on d + 1 and leaves a w-day
  window on d + w + 1; per user, a running sum of those changes is the state and a row is kept
  on each day with a non-zero change. The training set takes, per feature set, the latest row
  dated <= the order (an ASOF join), as the contract words it.
- `by_definition=True`, slow, to cross-check the first: `state(u, D, w) = C(u, D - 1) -
  C(u, D - w - 1)` with `C(u, d)` the number of u's events on days <= d (ASOF joins on
  cumulative daily counts), at each day some event enters or leaves a window and at the day
  before, keeping the days where the two differ; the training set takes the states at each
  order's day from the same formula.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

WINDOWS = (3, 7, 30)
TS_FORMAT = "%Y-%m-%d %H:%M:%S"


def count_columns(feature: str) -> list[str]:
    return [f"{feature}__count_over_{w}_days_rolling_windows" for w in WINDOWS]


DELAY_WINDOWS = (7, 30)
DELAY_FUNCTIONS = ("avg", "max", "min", "sum")
LATE_DAYS = 30  # late_chargebacks counts the chargebacks with delay_days > LATE_DAYS


def delay_columns() -> list[str]:
    """user_chargeback_delays' columns after cpf and timestamp, in butterfree's order."""
    return [
        *(
            f"delay_days__{f}_over_{w}_days_rolling_windows"
            for f in DELAY_FUNCTIONS
            for w in DELAY_WINDOWS
        ),
        *(f"late_chargebacks__count_over_{w}_days_rolling_windows" for w in DELAY_WINDOWS),
    ]


ORDERS = ("user_orders", "cpf_orders", "order_ts")
CHARGEBACKS = ("user_chargebacks", "cpf_chargebacks", "cb_ts")


@dataclass
class Reference:
    """The three outputs, sorted, with naive UTC timestamps and int32 counts."""

    user_orders: pd.DataFrame
    user_chargebacks: pd.DataFrame
    awesome_dataset: pd.DataFrame
    seconds: dict[str, float] = field(default_factory=dict)  # load, each output, total


def _connect(
    landing: Path, threads: int | None
) -> tuple[duckdb.DuckDBPyConnection, dict[str, float]]:
    """A connection with the landing's events loaded, and the seconds that took."""
    con = duckdb.connect()
    if threads:
        con.execute(f"set threads = {threads}")
    began = time.perf_counter()
    _load(con, landing)
    return con, {"load": time.perf_counter() - began}


def _load(con: duckdb.DuckDBPyConnection, landing: Path) -> None:
    """Events as in the landing format: identical lines count once."""
    con.execute(
        f"""
        create or replace table events as
        select distinct order_id, strptime(order_timestamp, '{TS_FORMAT}') as order_ts, cpf,
            strptime(nullif(chargeback_timestamp, ''), '{TS_FORMAT}') as cb_ts
        from read_csv(?, header = true, all_varchar = true)
        """,
        [str(landing)],
    )


def _daily(con: duckdb.DuckDBPyConnection, name: str, ts: str, end: dt.date) -> None:
    """`daily_<name>(cpf, d, n)`: events per user and day, for the days before `end`."""
    con.execute(
        f"""
        create or replace table daily_{name} as
        select cpf, {ts}::date as d, count(*)::int as n from events
        where {ts} is not null and {ts}::date < ? group by all
        """,
        [end],
    )


def _rows_by_deltas(con: duckdb.DuckDBPyConnection, name: str, start: dt.date, end: dt.date) -> str:
    """Events of day d enter every window on d + 1 and leave a w-day window on d + w + 1; the
    running sum of those changes per user is the state."""
    n = len(WINDOWS)
    moves = [f"select cpf, d + 1 as x, {', '.join(['n'] * n)} from daily_{name}"]
    for i, w in enumerate(WINDOWS):
        deltas = ", ".join("-n" if j == i else "0" for j in range(n))
        moves.append(f"select cpf, d + {w + 1}, {deltas} from daily_{name}")
    delta_cols = ", ".join(f"delta{i}" for i in range(n))
    return f"""
        with moves(cpf, x, {delta_cols}) as ({" union all ".join(moves)}),
        deltas as (
            select cpf, x, {", ".join(f"sum(delta{i}) as delta{i}" for i in range(n))}
            from moves where x <= '{end}' group by all
        )
        select cpf, x, {", ".join(f"sum(delta{i}) over w as s{i}" for i in range(n))}
        from deltas
        where x >= '{start}' and ({" or ".join(f"delta{i} <> 0" for i in range(n))})
        window w as (partition by cpf order by x rows unbounded preceding)
    """


def _rows_by_definition(
    con: duckdb.DuckDBPyConnection, name: str, start: dt.date, end: dt.date
) -> str:
    """States from their definition at each day where an event enters or leaves a window and at
    the day before; rows where the two differ."""
    con.execute(
        f"""
        create or replace table cum_{name} as
        select cpf, d, sum(n) over (partition by cpf order by d) as c from daily_{name}
        """
    )
    candidates = " union ".join(
        f"select cpf, d + {k} as x from daily_{name}" for k in (1, *(w + 1 for w in WINDOWS))
    )
    con.execute(
        f"""
        create or replace temp table changes as
        select distinct cpf, x from ({candidates}) where x between ? and ?
        """,
        [start, end],
    )
    con.execute(
        "create or replace temp table points as "
        "select cpf, x from changes union select cpf, x - 1 from changes"
    )
    joins, counts = _state_lookups("points", name, "x")
    con.execute(
        f"""
        create or replace temp table states as
        select points.cpf, points.x, {", ".join(f"{c} as s{i}" for i, c in enumerate(counts))}
        from points {joins}
        """
    )
    same = " and ".join(f"now.s{i} = before.s{i}" for i in range(len(WINDOWS)))
    return f"""
        select now.* from changes join states now using (cpf, x)
        join states before on before.cpf = now.cpf and before.x = now.x - 1
        where not ({same})
    """


def _state_lookups(points: str, name: str, day: str) -> tuple[str, list[str]]:
    """(ASOF joins, count expressions) giving the states of `points` at `day` from cum_<name>:
    state(u, D, w) = C(u, D - 1) - C(u, D - w - 1), C(u, d) = u's events on days <= d."""
    joins = [
        f"asof left join cum_{name} {name}_{k} "
        f"on {points}.cpf = {name}_{k}.cpf and {points}.{day} - {k} >= {name}_{k}.d"
        for k in (1, *(w + 1 for w in WINDOWS))
    ]
    counts = [f"(coalesce({name}_1.c, 0) - coalesce({name}_{w + 1}.c, 0))::int" for w in WINDOWS]
    return "\n".join(joins), counts


def _feature_rows(
    con: duckdb.DuckDBPyConnection,
    spec: tuple[str, str, str],
    start: dt.date,
    end: dt.date,
    by_definition: bool,
) -> None:
    name, feature, ts = spec
    _daily(con, name, ts, end)
    rows = (_rows_by_definition if by_definition else _rows_by_deltas)(con, name, start, end)
    counts = ", ".join(f"s{i}::int as {c}" for i, c in enumerate(count_columns(feature)))
    con.execute(
        f"create or replace table out_{name} as "
        f"select cpf, x::timestamp as timestamp, {counts} from ({rows})"
    )


def _awesome_dataset(
    con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, by_definition: bool
) -> None:
    """Orders of [start, end] with, per feature set, its latest row dated <= the order (as the
    contract says), or by definition the state at the order's day."""
    selects, joins = [], []
    for name, feature, _ in (ORDERS, CHARGEBACKS):
        columns = count_columns(feature)
        if by_definition:
            join, counts = _state_lookups("o", name, "day")
        else:
            join = (
                f"asof left join out_{name} {name} "
                f"on o.cpf = {name}.cpf and o.order_ts >= {name}.timestamp"
            )
            counts = [f"coalesce({name}.{c}, 0)" for c in columns]
        joins.append(join)
        selects += [f"{c}::int as {col}" for c, col in zip(counts, columns, strict=True)]
    con.execute(
        f"""
        create or replace table out_awesome_dataset as
        select o.order_id, o.order_ts as timestamp, o.cb_ts as chargeback_timestamp, o.cpf,
            {", ".join(selects)}
        from (select *, order_ts::date as day from events where day between ? and ?) o
        {" ".join(joins)}
        """,
        [start, end],
    )


def compute(
    landing: Path,
    start: dt.date,
    end: dt.date,
    *,
    by_definition: bool = False,
    threads: int | None = None,
) -> Reference:
    """The contract's outputs for the days [start, end] from the landing file at `landing`.

    `by_definition` takes the slow route (states from their definition, see the module's doc)
    instead of running sums of window deltas, to cross-check the two."""
    began = time.perf_counter()
    con, seconds = _connect(landing, threads)
    for spec in (ORDERS, CHARGEBACKS):
        tick = time.perf_counter()
        _feature_rows(con, spec, start, end, by_definition)
        seconds[spec[0]] = time.perf_counter() - tick
    tick = time.perf_counter()
    _awesome_dataset(con, start, end, by_definition)
    seconds["awesome_dataset"] = time.perf_counter() - tick
    seconds["total"] = time.perf_counter() - began
    outputs = {
        name: con.sql(f"select * from out_{name} order by all").df()
        for name in ("user_orders", "user_chargebacks", "awesome_dataset")
    }
    con.close()
    return Reference(**outputs, seconds=seconds)


@dataclass
class Delays:
    """user_chargeback_delays, sorted, with naive UTC timestamps, double aggregates (null over
    an empty window) and int32 counts."""

    rows: pd.DataFrame
    seconds: dict[str, float] = field(default_factory=dict)  # load, user_chargeback_delays


def _delay_states(points: str) -> str:
    """The state at each (cpf, x) of `points`: over the chargebacks with x - w <= cb_ts < x,
    avg/max/min/sum of delay_days (from whole seconds) for each window, then the count of those
    with delay_days > LATE_DAYS."""
    longest = max(DELAY_WINDOWS)

    def within(w: int) -> str:
        return f"cb.cb_ts >= p.x::timestamp - interval {w} day"

    aggregates = [
        f"{f}(cb.delay_s) filter (where {within(w)})::double / 86400"
        for f in DELAY_FUNCTIONS
        for w in DELAY_WINDOWS
    ]
    aggregates += [
        f"count(*) filter (where {within(w)} and cb.delay_days > {LATE_DAYS})::int"
        for w in DELAY_WINDOWS
    ]
    return f"""
        select p.cpf, p.x, {", ".join(f"{a} as s{i}" for i, a in enumerate(aggregates))}
        from {points} p left join cb
            on cb.cpf = p.cpf and cb.cb_ts < p.x::timestamp
            and cb.cb_ts >= p.x::timestamp - interval {longest} day
        group by p.cpf, p.x
    """


def compute_delays(
    landing: Path, start: dt.date, end: dt.date, *, threads: int | None = None
) -> Delays:
    """user_chargeback_delays for the days [start, end] from the landing file at `landing`: per
    cpf, a row on each day whose state differs from the day before's."""
    con, seconds = _connect(landing, threads)
    tick = time.perf_counter()
    con.execute(
        """
        create or replace temp table cb as
        select cpf, cb_ts, (epoch(cb_ts) - epoch(order_ts))::bigint as delay_s,
            (epoch(cb_ts) - epoch(order_ts))::double / 86400 as delay_days
        from events where cb_ts is not null and cb_ts < ?::timestamp
        """,
        [end],
    )
    # a chargeback of day d is in the w-day window of the days d + 1 .. d + w
    offsets = ", ".join(f"({k})" for k in (1, *(w + 1 for w in DELAY_WINDOWS)))
    con.execute(
        f"""
        create or replace temp table changes as
        select distinct cpf, cb_ts::date + k as x from cb, (values {offsets}) offsets(k)
        where x between ? and ?
        """,
        [start, end],
    )
    con.execute(
        "create or replace temp table points as "
        "select cpf, x from changes union select cpf, x - 1 from changes"
    )
    con.execute(f"create or replace temp table states as {_delay_states('points')}")
    columns = delay_columns()
    differs = " or ".join(f"now.s{i} is distinct from before.s{i}" for i in range(len(columns)))
    rows = con.sql(
        f"""
        select now.cpf, now.x::timestamp as timestamp,
            {", ".join(f"now.s{i} as {c}" for i, c in enumerate(columns))}
        from changes join states now using (cpf, x)
        join states before on before.cpf = now.cpf and before.x = now.x - 1
        where {differs}
        order by all
        """
    ).df()
    seconds["user_chargeback_delays"] = time.perf_counter() - tick
    con.close()
    return Delays(rows, seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("start", type=dt.date.fromisoformat)
    parser.add_argument("end", type=dt.date.fromisoformat)
    parser.add_argument("--by-definition", action="store_true", help="the slow, literal route")
    args = parser.parse_args(argv)
    landing = args.data_dir / "order_events" / "input.csv"
    ref = compute(landing, args.start, args.end, by_definition=args.by_definition)
    for name in ("user_orders", "user_chargebacks", "awesome_dataset"):
        print(f"{name}: {len(getattr(ref, name))} rows")
    print(", ".join(f"{k} {v:.2f} s" for k, v in ref.seconds.items()))
    delays = compute_delays(landing, args.start, args.end)
    print(f"user_chargeback_delays: {len(delays.rows)} rows")
    print(", ".join(f"{k} {v:.2f} s" for k, v in delays.seconds.items()))


if __name__ == "__main__":
    main()
