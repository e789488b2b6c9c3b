"""`make migrate`: a store written before Delta Lake becomes Delta tables in place, nothing lost,
and an update afterwards rewrites nothing."""

import datetime as dt
import functools
import hashlib
import json
import shutil
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from legiti_assets import migrate, storage
from legiti_assets.catalog import SPECS
from legiti_assets.io_managers import INPUTS, UNKNOWN
from legiti_assets.pit_join import read_states
from legiti_assets.resources import DataDir
from legiti_assets.update import update
from legiti_assets_tests.helpers import FEATURE_STORE, TEST_SPARK, resources_for
from legiti_assets_tests.sample import USER_ORDERS

ORDERS_30 = "cpf_orders__count_over_30_days_rolling_windows"
DATASET = "datasets/awesome_dataset"


def _rows(table: Path) -> list[tuple]:
    """A Delta table's rows, sorted, with naive UTC datetimes."""
    found = [
        tuple(v.replace(tzinfo=None) if isinstance(v, dt.datetime) else v for v in r.values())
        for r in DeltaTable(str(table)).to_pyarrow_table().to_pylist()
    ]
    return sorted(found, key=lambda r: [(v is None, str(v)) for v in r])


def _write_old_table(table: Path, dated_by: str, by_day: bool) -> None:
    """Store a Delta daily table as the code before Delta did: a Parquet file per month (or
    per day: the layout before month files) and a manifest (without row counts then)."""
    rows, records = DeltaTable(str(table)).to_pyarrow_table(), storage.recorded(table)
    shutil.rmtree(table)
    ts = rows.column(dated_by)
    parts = [pc.year(ts), pc.month(ts), *([pc.day(ts)] if by_day else [])]
    keys = sorted(set(zip(*(p.to_pylist() for p in parts), strict=True)))
    for key in keys:
        mask = functools.reduce(pc.and_, (pc.equal(p, k) for p, k in zip(parts, key, strict=True)))
        folder = table.joinpath(
            *(f"{n}={k}" for n, k in zip(("year", "month", "day"), key, strict=False))
        )
        folder.mkdir(parents=True)
        pq.write_table(rows.filter(mask), folder / "part-00000-c000.snappy.parquet")
    manifest = {
        str(day): {
            k: v for k, v in vars(r).items() if v is not None and not (by_day and k == "rows")
        }
        for day, r in sorted(records.items())
    }
    (table / migrate.MANIFEST).write_text(json.dumps(manifest))


def _write_old_dataset(data: Path, fingerprint: str | None = None) -> None:
    """Store the training set as part files and the fingerprint of its inputs' manifests (the
    right one unless `fingerprint`)."""
    table = data / DATASET
    rows = DeltaTable(str(table)).to_pyarrow_table()
    shutil.rmtree(table)
    table.mkdir()
    pq.write_table(rows, table / "part-00000-0a1b-c000.snappy.parquet")
    (table / ".part-00000-0a1b-c000.snappy.parquet.crc").write_bytes(b"crc")
    digest = hashlib.sha256()
    for _, inputs in migrate.training_sets(DataDir(path=str(data))):
        for input_table in inputs:
            manifest = data / input_table / migrate.MANIFEST
            digest.update(manifest.read_bytes() if manifest.exists() else b"-")
            digest.update(b"\0")
    (table / migrate.INPUTS_FILE).write_text(fingerprint or digest.hexdigest()[:16])


def _old_store(built: Path, to: Path, by_day: dict[str, bool]) -> tuple[Path, dict]:
    """A copy of the built sample with the tables of `by_day` stored the way before Delta (a
    directory per day where True), and what each held."""
    data = Path(shutil.copytree(built, to))
    before = {}
    for name, table, dated_by, *_ in migrate.daily_tables(DataDir(path=str(data))):
        if name in by_day:
            before[table] = (_rows(table), storage.recorded(table))
            _write_old_table(table, dated_by, by_day[name])
    return data, before


class Killed(RuntimeError):
    pass


def test_every_table_is_converted_in_place_and_an_update_rewrites_nothing(
    built_sample, tmp_path, spark, monkeypatch, capsys
) -> None:
    by_day = {"user_orders": True}  # the others as month files
    data, before = _old_store(
        built_sample,
        tmp_path / "data",
        {"order_events": False, "chargeback_events": False, "user_chargebacks": False, **by_day},
    )
    dataset = data / DATASET
    before[dataset] = (_rows(dataset), {})
    _write_old_dataset(data)
    user_orders = data / FEATURE_STORE / "user_orders"
    with pytest.raises(storage.LayoutError, match=r"user_orders: .*make migrate"):
        read_states(spark, data, SPECS["user_orders"])

    # the first run dies after its first commit, before removing that table's old files
    def killed(paths: object) -> None:
        raise Killed

    monkeypatch.setattr(migrate, "_remove", killed)
    with pytest.raises(Killed):
        migrate.migrate(TEST_SPARK, DataDir(path=str(data)))
    first = data / "raw" / "order_events"
    assert (first / "year=2020").is_dir() and (first / migrate.MANIFEST).exists()
    assert _rows(first) == before[first][0]  # Delta reads the commit, not the old files
    monkeypatch.undo()

    done = migrate.migrate(TEST_SPARK, DataDir(path=str(data)))

    assert done == {
        first: migrate.CLEANED,
        **{table: migrate.CONVERTED for table in before if table != first},
    }
    for table, (rows, records) in before.items():
        assert {p.suffix for p in table.iterdir() if p.name != "_delta_log"} == {".parquet"}
        assert _rows(table) == rows, table
        assert storage.recorded(table) == records, table  # row counts included
    states = read_states(spark, data, SPECS["user_orders"]).collect()
    assert sorted(tuple(r) for r in states) == USER_ORDERS
    assert storage.stored_days(user_orders) == sorted(storage.recorded(user_orders))
    migrate.main(["--data-dir", str(data)])
    assert capsys.readouterr().out == f"nothing to convert under {data}\n"

    # each day's records and the training set's inputs are what they were built from
    report = update(dg.DagsterInstance.ephemeral(), resources_for(data))
    assert report.lines()[1:] == [
        "order_events: ingested none",
        "chargeback_events: ingested none",
        "user_orders: recomputed none",
        "user_chargebacks: recomputed none",
        "everything is up to date: nothing was rewritten",
    ]


def test_a_day_under_older_columns_gets_the_newest_and_reads_as_stale(
    built_sample, tmp_path, spark
) -> None:
    data, _ = _old_store(built_sample, tmp_path / "data", {"user_orders": True})
    _write_old_dataset(data, fingerprint="built-from-else")
    table = data / FEATURE_STORE / "user_orders"
    chargebacks = data / FEATURE_STORE / "user_chargebacks"
    untouched = storage.current_version(chargebacks)
    day = table / "year=2020" / "month=5" / "day=13"
    older = pq.read_table(next(day.glob("*.parquet"))).drop_columns([ORDERS_30])
    shutil.rmtree(day)
    day.mkdir()
    pq.write_table(older, day / "part-0.parquet")
    manifest = json.loads((table / migrate.MANIFEST).read_text())
    del manifest["2020-05-13"]["version"]  # recorded before versions were
    (table / migrate.MANIFEST).write_text(json.dumps(manifest))

    done = migrate.migrate(TEST_SPARK, DataDir(path=str(data)))

    assert done == {table: migrate.CONVERTED, data / DATASET: migrate.STALE}
    assert storage.current_version(chargebacks) == untouched
    on_13 = [row for row in USER_ORDERS if row[1] == dt.datetime(2020, 5, 13)]
    assert len(on_13) == 2
    rows = _rows(table)
    assert [r for r in rows if r[1] == dt.datetime(2020, 5, 13)] == [(*r[:-1], None) for r in on_13]
    assert [r for r in rows if r[1] != dt.datetime(2020, 5, 13)] == [
        r for r in USER_ORDERS if r[1] != dt.datetime(2020, 5, 13)
    ]
    records = storage.recorded(table)
    assert records[dt.date(2020, 5, 13)].version == UNKNOWN
    assert records[dt.date(2020, 5, 13)].rows is None  # a feature set's days count none
    assert records[dt.date(2020, 5, 12)].version == SPECS["user_orders"].version
    with pytest.raises(Exception, match=r"user_orders: 1 stored day\(s\), 2020-05-13 .*backfill"):
        read_states(spark, data, SPECS["user_orders"])
    # its inputs changed since it was built: the next update rebuilds it
    commit = storage.latest_commit(data / DATASET)
    assert commit is not None and INPUTS not in commit.facts
    assert not migrate.pending(DataDir(path=str(data)))


def test_manifests_of_every_era_are_read(tmp_path) -> None:
    manifest = tmp_path / migrate.MANIFEST
    manifest.write_text('["2020-05-01"]')
    assert migrate.old_records(tmp_path) == {dt.date(2020, 5, 1): storage.DayRecord()}
    manifest.write_text('{"2020-05-01": "v1", "2020-05-02": null}')
    assert migrate.old_records(tmp_path) == {
        dt.date(2020, 5, 1): storage.DayRecord(version="v1"),
        dt.date(2020, 5, 2): storage.DayRecord(),
    }
    manifest.write_text('{"2020-05-01": {"version": "v1", "content": "c", "rows": 3}}')
    assert migrate.old_records(tmp_path) == {
        dt.date(2020, 5, 1): storage.DayRecord(version="v1", content="c", rows=3)
    }
