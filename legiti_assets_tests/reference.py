"""An obviously-correct pure-Python model of the semantics contract, for comparing outputs."""

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence

Event = tuple[str, dt.datetime]  # (cpf, event time)
WINDOWS = (3, 7, 30)


def midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day)


def state(times: Sequence[dt.datetime], day: dt.date) -> tuple[int, ...]:
    """Counts of events with D - w <= t < D for each window w, D = day 00:00."""
    d = midnight(day)
    return tuple(sum(d - dt.timedelta(days=w) <= t < d for t in times) for w in WINDOWS)


def feature_rows(
    events: Iterable[Event], first: dt.date, last: dt.date
) -> list[tuple[str, dt.datetime, int, int, int]]:
    """Rows (cpf, D, counts) for each day D in [first, last] where the state changed."""
    by_user: dict[str, list[dt.datetime]] = defaultdict(list)
    for cpf, t in events:
        by_user[cpf].append(t)
    rows = []
    for cpf, times in by_user.items():
        day = first
        previous = state(times, first - dt.timedelta(days=1))
        while day <= last:
            current = state(times, day)
            if current != previous:
                rows.append((cpf, midnight(day), *current))
            previous, day = current, day + dt.timedelta(days=1)
    return sorted(rows)


def dataset_rows(
    orders: Iterable[tuple[str, dt.datetime, str, dt.datetime | None]],
) -> list[tuple]:
    """(order_id, timestamp, chargeback_timestamp, cpf, 3 order counts, 3 chargeback counts)."""
    orders = list(orders)
    order_times: dict[str, list[dt.datetime]] = defaultdict(list)
    chargeback_times: dict[str, list[dt.datetime]] = defaultdict(list)
    for _, t, cpf, cb in orders:
        order_times[cpf].append(t)
        if cb is not None:
            chargeback_times[cpf].append(cb)
    return sorted(
        (
            order_id,
            t,
            cb,
            cpf,
            *state(order_times[cpf], t.date()),
            *state(chargeback_times[cpf], t.date()),
        )
        for order_id, t, cpf, cb in orders
    )
