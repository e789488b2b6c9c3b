"""What to run, and why: one pure function from what is declared, what is stored and what has
landed to a plan. No Spark, no Dagster, no clock: the callers read the store (`observe`) and
run the plan (`executor`).

A plan is a list of steps, in order; a step is one run: some assets over one contiguous range of
days (Dagster runs a partitioned asset over one range per run, dagster-io/dagster#32335), or the
training sets, which are not partitioned. Its reasons say why each asset is in it.

1. Raw days whose stored rows are not the landing's, from the first feature day's lookback to
   the newest event, and on to `today`: a day nothing has landed for is stored empty, and
   rewritten if events land for it later.
2. Feature-set days never computed, or computed under another declaration or from other source
   rows than the source will hold once step 1 has run: every day from the first event's (the
   training sets need them all) to the day after the newest event (the first whose states
   count it; at most `today`, the last partition), and on to `today` once every feature set
   has days (stored, or computed by the same plan). Each is mirrored online in the same run.
3. Online days that do not mirror their feature-set day, and are not recomputed.
4. Training sets built from other inputs than they will have: any input written above, or
   changed since they were built (once every feature set they read has days).

Running a plan and planning again yields an empty plan (`legiti_assets_tests/test_planner.py`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from legiti_assets.records import (
    EMPTY,
    DayRecord,
    contiguous,
    day_range,
    describe,
    raw_days_to_ingest,
    stale_feature_days,
)

Days = Mapping[dt.date, DayRecord]


@dataclass(frozen=True)
class FeatureSet:
    """What the planner needs of a feature set's declaration."""

    source: str
    version: str
    lookback_days: int
    online: str


@dataclass(frozen=True)
class Declarations:
    """The registry as the planner sees it: the raw tables, the feature sets by name, and each
    training set's input tables (raw tables and feature sets, by name)."""

    first_day: dt.date
    raw_tables: tuple[str, ...]
    feature_sets: Mapping[str, FeatureSet]
    training_sets: Mapping[str, tuple[str, ...]]

    @property
    def lookback_days(self) -> int:
        return max((f.lookback_days for f in self.feature_sets.values()), default=0)


@dataclass(frozen=True)
class Stored:
    """What the store holds: each daily table's records, the feature-set day each online table
    mirrors (its record's token), and whether each training set was built from its inputs as
    they are now."""

    raw: Mapping[str, Days]
    features: Mapping[str, Days]
    mirrored: Mapping[str, Mapping[dt.date, str]]
    training_current: Mapping[str, bool]


@dataclass(frozen=True)
class Step:
    """One run: `assets` over first..last (None: the unpartitioned training sets), and why."""

    assets: tuple[str, ...]
    first: dt.date | None
    last: dt.date | None
    reasons: tuple[str, ...]

    @property
    def days(self) -> list[dt.date]:
        return [] if self.first is None or self.last is None else day_range(self.first, self.last)


@dataclass(frozen=True)
class Plan:
    """The steps to run, in order, and what they rewrite: the raw days ingested, the
    feature-set days recomputed (each mirrored online too), the online days mirrored again, and
    the training sets rebuilt."""

    steps: tuple[Step, ...] = ()
    ingest: Mapping[str, list[dt.date]] = field(default_factory=dict)
    compute: Mapping[str, list[dt.date]] = field(default_factory=dict)
    mirror: Mapping[str, list[dt.date]] = field(default_factory=dict)
    rebuild: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.steps)


def _why(name: str, days: list[dt.date], because: Mapping[dt.date, str]) -> list[str]:
    """`name: <days>, <reason>` for each reason its days have."""
    by_reason: dict[str, list[dt.date]] = {}
    for day in days:
        by_reason.setdefault(because[day], []).append(day)
    return [f"{name}: {describe(d)}, {reason}" for reason, d in by_reason.items()]


def _steps(
    days_per_asset: Mapping[str, list[dt.date]],
    assets_of: Mapping[str, tuple[str, ...]],
    reasons: Mapping[str, Mapping[dt.date, str]],
) -> list[Step]:
    """One step per contiguous range of days, with every asset that needs exactly that range."""
    ranges: dict[tuple[dt.date, dt.date], list[str]] = {}
    for name, days in days_per_asset.items():
        for span in contiguous(days):
            ranges.setdefault(span, []).append(name)
    return [
        Step(
            assets=tuple(a for name in names for a in assets_of[name]),
            first=first,
            last=last,
            reasons=tuple(
                line for name in names for line in _why(name, day_range(first, last), reasons[name])
            ),
        )
        for (first, last), names in sorted(ranges.items())
    ]


def _after(newest: dt.date, today: dt.date | None) -> dt.date:
    """The first feature day whose states count the newest event: the day after it, unless
    that is after `today` (the last partition: the new day's run counts it)."""
    after = newest + dt.timedelta(days=1)
    return after if today is None else min(after, max(today, newest))


def plan(
    declared: Declarations,
    stored: Stored,
    landing: Mapping[str, Mapping[dt.date, str]] | None = None,
    today: dt.date | None = None,
) -> Plan:
    """The steps that bring the store up to date with `landing` (each raw table's day
    fingerprints; None: the raw tables are taken as they are, their days with rows as the
    events) and extend the raw tables (with a landing) and the feature sets (once every one has
    days) through `today` (None: through the newest event, and the day after it)."""
    if landing is not None:
        event_days = [day for days in landing.values() for day in days]
    else:
        event_days = [
            d for days in stored.raw.values() for d, r in days.items() if r.content != EMPTY
        ]
    first_event, newest = min(event_days, default=None), max(event_days, default=None)

    # 1. raw days
    ingest: dict[str, list[dt.date]] = {}
    ingest_why: dict[str, dict[dt.date, str]] = {}
    source: dict[str, dict[dt.date, DayRecord]] = {
        n: dict(stored.raw.get(n, {})) for n in declared.raw_tables
    }
    # days stored before the first partition (it was moved later) are no partitions any more:
    # nothing is planned for them
    first = declared.first_day
    if landing is not None:
        for name in declared.raw_tables:
            span = [d for d in source[name] if d >= first]
            if first_event is not None and newest is not None:
                lookback = first_event - dt.timedelta(days=declared.lookback_days)
                span += [max(lookback, declared.first_day), newest]
            if span and today is not None:
                span.append(max(today, max(span)))
            days = (
                raw_days_to_ingest(landing.get(name, {}), source[name], min(span), max(span))
                if span
                else []
            )
            ingest[name] = days
            ingest_why[name] = {
                d: "never ingested" if d not in source[name] else "landing rows differ"
                for d in days
            }
            # what the source will hold once step 1 has run
            for day in days:
                source[name][day] = DayRecord(content=landing.get(name, {}).get(day, EMPTY))

    # 2. feature-set days: from the stored and the landed, then on to `today` once every feature
    # set has days (stored, or computed by this plan)
    spans: dict[str, list[dt.date]] = {}
    for name in declared.feature_sets:
        spans[name] = [d for d in stored.features.get(name, {}) if d >= first]
        if first_event is not None and newest is not None:
            spans[name] += [max(first_event, declared.first_day), _after(newest, today)]
    if today is not None and all(spans.values()):
        for span in spans.values():
            span.append(max(today, max(span)))
    compute: dict[str, list[dt.date]] = {}
    compute_why: dict[str, dict[dt.date, str]] = {}
    for name, feature_set in declared.feature_sets.items():
        days_stored = stored.features.get(name, {})
        span = spans[name]
        days = (
            stale_feature_days(
                days_stored,
                source.get(feature_set.source, {}),
                feature_set.version,
                feature_set.lookback_days,
                min(span),
                max(span),
            )
            if span
            else []
        )
        compute[name] = days
        compute_why[name] = {
            d: "never computed"
            if d not in days_stored
            else "declaration changed"
            if days_stored[d].version != feature_set.version
            else "source days changed"
            for d in days
        }

    # 3. online days that do not mirror their feature-set day
    mirror: dict[str, list[dt.date]] = {}
    for name in declared.feature_sets:
        mirrored = stored.mirrored.get(name, {})
        recomputed = set(compute[name])
        mirror[name] = [
            day
            for day, record in sorted(stored.features.get(name, {}).items())
            if day >= first and day not in recomputed and mirrored.get(day) != record.token
        ]

    # 4. training sets
    written = {n for n, d in [*ingest.items(), *compute.items()] if d}
    rebuild = tuple(
        name
        for name, inputs in declared.training_sets.items()
        if written & set(inputs)
        or (
            not stored.training_current.get(name, False)
            and all(stored.features.get(n) for n in inputs if n in declared.feature_sets)
        )
    )

    online = {n: f.online for n, f in declared.feature_sets.items()}
    steps = [
        *_steps(ingest, {n: (n,) for n in ingest}, ingest_why),
        *_steps(compute, {n: (n, online[n]) for n in compute}, compute_why),
        *_steps(
            mirror,
            {n: (online[n],) for n in mirror},
            {n: {d: "online store does not mirror it" for d in days} for n, days in mirror.items()},
        ),
    ]
    if rebuild:
        steps.append(
            Step(
                assets=rebuild,
                first=None,
                last=None,
                reasons=tuple(
                    f"{name}: inputs rewritten above"
                    if written & set(declared.training_sets[name])
                    else f"{name}: built from other inputs than stored"
                    for name in rebuild
                ),
            )
        )
    return Plan(
        steps=tuple(steps),
        ingest=ingest,
        compute=compute,
        mirror={n: d for n, d in mirror.items() if d},
        rebuild=rebuild,
    )


def plan_range(
    declared: Declarations, start: dt.date, end: dt.date, first_event: dt.date | None = None
) -> Plan:
    """`make awesome-dataset START END`: every day of start..end, whatever is stored, in two
    runs: the raw tables, then the feature sets, their online mirrors and the training sets. Events
    are ingested from the lookback before `start`, so the first days' states count every event
    of their windows, and from the first event on, so the training sets can tell which orders
    have their whole history stored."""
    if end < start:
        raise ValueError(f"END {end} is before START {start}")
    if start < declared.first_day:
        raise ValueError(f"START {start} is before the first partition {declared.first_day}")
    raw_start = max(start - dt.timedelta(days=declared.lookback_days), declared.first_day)
    if first_event is not None:
        raw_start = max(min(raw_start, first_event), declared.first_day)
    requested = f"requested {start}..{end}"
    ingest = {name: day_range(raw_start, end) for name in declared.raw_tables}
    compute = {name: day_range(start, end) for name in declared.feature_sets}
    rebuild = tuple(declared.training_sets)
    steps = (
        Step(
            assets=declared.raw_tables,
            first=raw_start,
            last=end,
            reasons=(f"{requested}, with the events of the windows before {start}",),
        ),
        # the training sets in the same run: one run fewer, and they read what it wrote
        Step(
            assets=(
                *(a for n, f in declared.feature_sets.items() for a in (n, f.online)),
                *rebuild,
            ),
            first=start,
            last=end,
            reasons=(requested,),
        ),
    )
    return Plan(steps=steps, ingest=ingest, compute=compute, rebuild=rebuild)
