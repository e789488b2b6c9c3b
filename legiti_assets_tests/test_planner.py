"""The planner against a model of the store: random declarations, stored records, landings and
days, each plan run by `simulate` (what each step's runs record), then held to its contract."""

import datetime as dt
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from legiti_assets.planner import Declarations, FeatureSet, Plan, Stored, plan, plan_range
from legiti_assets.records import EMPTY, DayRecord, day_range, inputs_fingerprint

BASE = dt.date(2020, 1, 1)
RAW = ("order_events", "chargeback_events")
CONTENTS = ("1:5", "2:7", "3:1", EMPTY)


def day(i: int) -> dt.date:
    return BASE + dt.timedelta(days=i)


@st.composite
def worlds(draw) -> tuple[Declarations, Stored, dict | None, dt.date | None]:
    """Declarations, what is stored (some of it current, some stale), a landing (or none, as
    the schedule plans) and a day to extend to (or none)."""
    first_day = day(draw(st.integers(0, 4)))
    feature_sets = {
        f"fs{i}": FeatureSet(
            source=draw(st.sampled_from(RAW)),
            version=draw(st.sampled_from(["v1", "v2"])),
            lookback_days=draw(st.integers(1, 4)),
            online=f"fs{i}_online",
        )
        for i in range(draw(st.integers(1, 3)))
    }
    declared = Declarations(
        first_day=first_day,
        raw_tables=RAW,
        feature_sets=feature_sets,
        training_sets={"ts": ("order_events", *draw(st.sets(st.sampled_from(list(feature_sets)))))},
    )
    days = st.integers(0, 20).map(day).filter(lambda d: d >= first_day)
    contents = st.sampled_from(CONTENTS)
    raw = {
        n: draw(st.dictionaries(days, contents.map(lambda c: DayRecord(content=c)))) for n in RAW
    }
    features = {}
    for name, fs in feature_sets.items():
        records = {}
        for d in draw(st.sets(days)):
            kind = draw(st.sampled_from(["current", "old version", "old inputs"]))
            inputs = inputs_fingerprint(raw[fs.source], d, fs.lookback_days)
            records[d] = DayRecord(
                version="v0" if kind == "old version" else fs.version,
                inputs="stale" if kind == "old inputs" else inputs,
            )
        features[name] = records
    mirrored: dict[str, dict[dt.date, str]] = {}
    for name, records in features.items():
        mirrored[name] = {}
        for d, r in records.items():
            kind = draw(st.sampled_from(["mirrors it", "mirrors another", "mirrors none"]))
            if kind != "mirrors none":
                mirrored[name][d] = r.token if kind == "mirrors it" else "another"
    stored = Stored(
        raw=raw,
        features=features,
        mirrored=mirrored,
        training_current={"ts": draw(st.booleans())},
    )
    landing = draw(
        st.none() | st.fixed_dictionaries({n: st.dictionaries(days, contents) for n in RAW})
    )
    today = draw(st.none() | st.integers(0, 26).map(day))
    return declared, stored, landing, today


def simulate(declared: Declarations, stored: Stored, landing: dict | None, done: Plan) -> Stored:
    """What the store holds after each step's run has recorded what it wrote."""
    raw = {n: dict(stored.raw.get(n, {})) for n in declared.raw_tables}
    features = {n: dict(stored.features.get(n, {})) for n in declared.feature_sets}
    mirrored = {n: dict(stored.mirrored.get(n, {})) for n in declared.feature_sets}
    current = dict(stored.training_current)
    online = {f.online: n for n, f in declared.feature_sets.items()}
    for step in done.steps:
        for asset in step.assets:
            if asset in raw:
                assert landing is not None
                for d in step.days:
                    raw[asset][d] = DayRecord(content=landing[asset].get(d, EMPTY))
            elif asset in features:
                fs = declared.feature_sets[asset]
                for d in step.days:
                    inputs = inputs_fingerprint(raw[fs.source], d, fs.lookback_days)
                    features[asset][d] = DayRecord(version=fs.version, inputs=inputs)
            elif asset in online:
                for d in step.days:
                    mirrored[online[asset]][d] = features[online[asset]][d].token
            else:
                assert step.first is None
                current[asset] = True
            for name, inputs in declared.training_sets.items():
                if asset in inputs:
                    current[name] = False
    return Stored(raw=raw, features=features, mirrored=mirrored, training_current=current)


def _covered(done: Plan) -> list[tuple[str, dt.date | None]]:
    return [(a, d) for s in done.steps for a in s.assets for d in (s.days or [None])]


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_a_plan_covers_every_stale_day_once_and_never_a_fresh_one(world) -> None:
    declared, stored, landing, today = world
    done = plan(declared, stored, landing, today)
    covered = _covered(done)
    assert len(covered) == len(set(covered))  # each asset and day at most once
    kinds = [
        "raw"
        if set(s.assets) <= set(RAW)
        else "training"
        if s.first is None
        else "features"
        if any(a in declared.feature_sets for a in s.assets)
        else "online"
        for s in done.steps
    ]
    assert kinds == sorted(kinds, key=["raw", "features", "online", "training"].index)
    assert kinds.count("training") <= 1
    assert all(s.reasons and (s.first is None or s.first <= s.last) for s in done.steps)
    # never a fresh one: every write changes what is recorded
    after = simulate(declared, stored, landing, done)
    for name, days in done.ingest.items():
        for d in days:
            assert stored.raw[name].get(d) != after.raw[name][d]
    for name, days in done.compute.items():
        for d in days:
            assert stored.features[name].get(d) != after.features[name][d]
    for name, days in done.mirror.items():
        for d in days:
            assert stored.mirrored[name].get(d) != stored.features[name][d].token
    written = {n for n, days in [*done.ingest.items(), *done.compute.items()] if days}
    for name in done.rebuild:
        assert not stored.training_current[name] or written & set(declared.training_sets[name])
    # every stale day: the contract's spans hold what the landing and declarations say
    if landing is None:  # the raw tables as they are
        events = [d for days in stored.raw.values() for d, r in days.items() if r.content != EMPTY]
    else:
        events = [d for days in landing.values() for d in days]
    for name in RAW if landing else ():
        span = list(after.raw[name])
        if events:
            lookback = max(f.lookback_days for f in declared.feature_sets.values())
            span += [max(min(events) - dt.timedelta(days=lookback), declared.first_day)]
            span += [max(events)]
        if span and today:
            span.append(max(today, max(span)))
        for d in day_range(min(span), max(span)) if span else []:
            assert after.raw[name][d].content == landing[name].get(d, EMPTY), (name, d)
    spans = {n: list(stored.features[n]) for n in declared.feature_sets}
    for span in spans.values():
        if events:
            counted = max(events) + dt.timedelta(days=1)
            if today:  # the last partition
                counted = min(counted, max(today, max(events)))
            span += [max(min(events), declared.first_day), counted]
    for span in spans.values():
        if today and all(spans.values()):
            span.append(max(today, max(span)))
    for name, fs in declared.feature_sets.items():
        span = spans[name]
        for d in day_range(min(span), max(span)) if span else []:
            record = after.features[name][d]
            assert record.version == fs.version
            assert record.inputs == inputs_fingerprint(after.raw[fs.source], d, fs.lookback_days)
        for d, record in after.features[name].items():
            assert after.mirrored[name][d] == record.token
    if any(after.features.values()) and all(
        after.features[n] for n in declared.training_sets["ts"] if n in declared.feature_sets
    ):
        assert after.training_current["ts"]


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_planning_again_after_the_plan_has_run_yields_nothing(world) -> None:
    declared, stored, landing, today = world
    after = simulate(declared, stored, landing, plan(declared, stored, landing, today))
    again = plan(declared, after, landing, today)
    assert not again, again.steps


@settings(max_examples=100, deadline=None)
@given(worlds(), st.integers(0, 30), st.integers(0, 30), st.none() | st.integers(0, 30))
def test_the_main_job_plans_its_range_and_the_lookback_before_it(world, a, b, event) -> None:
    declared = world[0]
    start, end = day(min(a, b)), day(max(a, b))
    first_event = None if event is None else day(event)
    if start < declared.first_day:
        try:
            plan_range(declared, start, end, first_event)
        except ValueError as error:
            assert "before the first partition" in str(error)
        else:
            raise AssertionError("a start before the first partition is refused")
        return
    done = plan_range(declared, start, end, first_event)
    # the events of every window of the first day, and from the first event on
    lookback = [start - dt.timedelta(days=f.lookback_days) for f in declared.feature_sets.values()]
    raw_start = max(min([*lookback, *([first_event] if first_event else [])]), declared.first_day)
    features = [a for n, f in declared.feature_sets.items() for a in (n, f.online)]
    assert [(s.assets, s.first, s.last) for s in done.steps] == [
        (RAW, raw_start, end),
        ((*features, "ts"), start, end),
    ]
    assert done.rebuild == ("ts",)
    assert all(d == day_range(start, end) for d in done.compute.values())


def test_a_correction_reaches_the_lookback_after_it() -> None:
    """The sample's shape: a moved order rewrites its raw day, the feature days whose windows
    read it, and the training set; each step says why."""
    declared = Declarations(
        first_day=day(0),
        raw_tables=RAW,
        feature_sets={"user_orders": FeatureSet("order_events", "v1", 3, "user_orders_online")},
        training_sets={"awesome_dataset": ("order_events", "user_orders")},
    )
    raw = {d: DayRecord(content="1:1") for d in map(day, range(10))}
    features = {
        d: DayRecord(version="v1", inputs=inputs_fingerprint(raw, d, 3))
        for d in map(day, range(11))
    }
    stored = Stored(
        raw={"order_events": raw, "chargeback_events": {d: DayRecord(content=EMPTY) for d in raw}},
        features={"user_orders": features},
        mirrored={"user_orders": {d: r.token for d, r in features.items()}},
        training_current={"awesome_dataset": True},
    )
    landing = {"order_events": {**{d: "1:1" for d in raw}, day(4): "2:9"}, "chargeback_events": {}}
    done = plan(declared, stored, landing)
    assert [(s.assets, s.first, s.last, s.reasons) for s in done.steps] == [
        (
            ("order_events",),
            day(4),
            day(4),
            ("order_events: 1 day: 2020-01-05, landing rows differ",),
        ),
        (
            ("user_orders", "user_orders_online"),
            day(5),
            day(7),
            ("user_orders: 3 days: 2020-01-06..2020-01-08, source days changed",),
        ),
        (("awesome_dataset",), None, None, ("awesome_dataset: inputs rewritten above",)),
    ]
    # no chargeback landed, and every day is stored as empty: nothing to ingest there
    assert done.ingest == {"order_events": [day(4)], "chargeback_events": []}
    # a new declaration version recomputes every day, and says so
    bumped = replace(
        declared,
        feature_sets={"user_orders": FeatureSet("order_events", "v2", 3, "user_orders_online")},
    )
    again = plan(bumped, stored, {"order_events": {d: "1:1" for d in raw}, "chargeback_events": {}})
    assert again.compute["user_orders"] == list(map(day, range(11)))
    assert again.steps[0].reasons == (
        "user_orders: 11 days: 2020-01-01..2020-01-11, declaration changed",
    )
    # the first partition moved later: the days stored before it are planned no more, even
    # where the landing no longer holds their rows
    later = replace(declared, first_day=day(5))
    moved = plan(later, stored, {"order_events": {d: "1:1" for d in raw if d >= day(5)}})
    assert moved.ingest == {"order_events": [], "chargeback_events": []}
    assert moved.compute == {"user_orders": []} and moved.mirror == {}
    assert not moved


def test_an_update_on_the_day_of_the_newest_event_stops_at_that_day() -> None:
    """An order of today, landed today: the raw tables through today, the feature sets through
    today (the last partition; tomorrow's states, the first counting it, are the new day's
    run's). A `today` before the events never moves a range's start."""
    declared = Declarations(
        first_day=day(0),
        raw_tables=RAW,
        feature_sets={"user_orders": FeatureSet("order_events", "v1", 3, "user_orders_online")},
        training_sets={"awesome_dataset": ("order_events", "user_orders")},
    )
    empty = Stored(raw={}, features={}, mirrored={}, training_current={})
    landing = {"order_events": {day(5): "1:1", day(9): "1:2"}, "chargeback_events": {}}
    done = plan(declared, empty, landing, today=day(9))
    assert [(s.assets, s.first, s.last) for s in done.steps] == [
        (RAW, day(2), day(9)),
        (("user_orders", "user_orders_online"), day(5), day(9)),
        (("awesome_dataset",), None, None),
    ]
    # without a day: through the day after the newest event
    assert plan(declared, empty, landing).compute["user_orders"] == day_range(day(5), day(10))
    # a day before the events: the ranges the events alone give
    early = plan(declared, empty, landing, today=day(1))
    assert early.ingest["order_events"] == day_range(day(2), day(9))
    assert early.compute["user_orders"] == day_range(day(5), day(9))
