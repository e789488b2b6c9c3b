"""butterfree's own `AggregatedFeatureSet.construct` as the oracle of the engine's rows.

butterfree builds every (key, day) pair from the first event on, writes null where a window
is empty and repeats a state on the days it does not change. Read its null counts as 0, drop
its rows that repeat the key's previous state, and its rows are the engine's. Slow (keys x
days): small inputs only.
"""

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

from butterfree.clients import SparkClient
from pyspark.sql import DataFrame

from legiti_assets.engine import TIMESTAMP, FeatureSetSpec

RELATIVE = 1e-9


def close(a: object, b: object) -> bool:
    """Equal, or floats within 1e-9 x max(1, |value|)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=0, abs_tol=RELATIVE * max(1.0, abs(a), abs(b)))
    return a == b


def same_state(a: Sequence[object], b: Sequence[object]) -> bool:
    return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))


def empty_state(spec: FeatureSetSpec) -> tuple[object, ...]:
    return tuple(0 if a.count_like else None for a in spec.aggregates)


def butterfree_rows(
    events: DataFrame, spec: FeatureSetSpec, feature_set, first_day: dt.date, last_day: dt.date
) -> "Oracle":
    """butterfree's rows for days first_day..last_day, as the engine states them."""
    built = feature_set.construct(
        events, client=SparkClient(), end_date=str(last_day + dt.timedelta(days=1))
    )
    rows = sorted(
        (tuple(r) for r in built.select(*spec.columns).collect()), key=lambda r: (r[0], r[1])
    )
    kept, previous, before = [], {}, {}
    for key, timestamp, *values in rows:
        state = tuple(
            0 if v is None and a.count_like else v
            for v, a in zip(values, spec.aggregates, strict=True)
        )
        if timestamp.date() < first_day:
            before[key] = state
        changed = not same_state(state, previous.get(key, empty_state(spec)))
        if changed and first_day <= timestamp.date() <= last_day:
            kept.append((key, timestamp, *state))
        previous[key] = state
    return Oracle(kept, before)


@dataclass
class Oracle:
    rows: list[tuple]
    states_before: dict[str, tuple]  # each key's state the day before the range


def without_repeats(
    rows: list[tuple], spec: FeatureSetSpec, before: dict[str, tuple]
) -> list[tuple]:
    """Rows whose state differs, within the tolerance, from the key's previous kept state
    (`before` the range): one rule for both sides, so a float sum that moves by an ulp
    (0.1 + 0.2, then 0.3) is a row on neither."""
    kept, previous = [], dict(before)
    for key, timestamp, *values in rows:
        if not same_state(tuple(values), previous.get(key, empty_state(spec))):
            kept.append((key, timestamp, *values))
            previous[key] = tuple(values)
    return kept


def assert_same_rows(ours: list[tuple], oracle: "Oracle", spec: FeatureSetSpec) -> None:
    before = oracle.states_before
    ours, theirs = without_repeats(ours, spec, before), without_repeats(oracle.rows, spec, before)
    assert [r[:2] for r in ours] == [r[:2] for r in theirs], (ours, theirs)
    for mine, oracle in zip(ours, theirs, strict=True):
        assert same_state(mine, oracle), (mine, oracle)


def engine_rows(states: DataFrame) -> list[tuple]:
    return sorted((tuple(r) for r in states.collect()), key=lambda r: (r[0], r[1]))


__all__ = ["TIMESTAMP", "assert_same_rows", "butterfree_rows", "engine_rows"]
