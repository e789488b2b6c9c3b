"""The pooled event log records what Dagster's stock SQLite event log records."""

import threading
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

from legiti_assets.event_log import PooledSqliteEventLogStorage
from legiti_assets.partitions import RANGE_RUN_ENV

REPO = Path(__file__).resolve().parents[1]
days = dg.DailyPartitionsDefinition(start_date="2020-01-01", end_date="2020-01-11")


@dg.asset(
    partitions_def=days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=[dg.AssetCheckSpec("positive", asset="daily")],
    config_schema={"fail": bool},
)
def daily(context: dg.AssetExecutionContext):
    if context.op_config["fail"]:
        raise RuntimeError("planned failure")
    yield dg.MaterializeResult(metadata={"days": len(context.partition_keys)})
    yield dg.AssetCheckResult(check_name="positive", passed=True)


def _instance(home: Path, pooled: bool) -> dg.DagsterInstance:
    home.mkdir()
    config = (REPO / "deploy" / "dagster.yaml").read_text()
    if not pooled:
        config = config.split("event_log_storage:")[0]
    (home / "dagster.yaml").write_text(config)
    return dg.DagsterInstance.from_config(str(home))


def _history(instance: dg.DagsterInstance) -> dict[str, object]:
    """What the UI shows of the asset: materialized, failed and checked partitions."""
    for first, last, fail in [
        ("2020-01-01", "2020-01-04", False),
        ("2020-01-03", "2020-01-06", False),
        ("2020-01-08", "2020-01-09", True),
    ]:
        dg.materialize(
            [daily],
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": first,
                "dagster/asset_partition_range_end": last,
            },
            run_config={"ops": {"daily": {"config": {"fail": fail}}}},
            raise_on_error=False,
        )
    storage = instance.event_log_storage
    key = dg.AssetKey("daily")
    check = dg.AssetCheckKey(key, "positive")
    return {
        "materialized": Counter(
            record.partition_key for record in instance.fetch_materializations(key, 100).records
        ),
        "attempted_not_materialized": sorted(
            storage.get_latest_asset_partition_materialization_attempts_without_materializations(
                key
            )
        ),
        "check_executions": sorted(
            (record.partition or "", record.status.value)
            for record in storage.get_asset_check_execution_history(check, limit=100)
        ),
        "latest_metadata": instance.get_latest_materialization_event(key)
        .asset_materialization.metadata["days"]
        .value,
        "latest_partition": instance.get_latest_materialization_event(key).dagster_event.partition,
        "materialized_partitions": sorted(instance.get_materialized_partitions(key)),
        # the asset's row names the last event stored, by its id in the index
        "latest_is_last_stored": instance.get_asset_records([key])[
            0
        ].asset_entry.last_materialization_record.storage_id
        == max(r.storage_id for r in instance.fetch_materializations(key, 100).records),
        # their values (data versions) differ between runs; which are indexed must not
        "indexed_tag_keys": Counter(
            key for tags in storage.get_event_tags_for_asset(key) for key in tags
        ),
    }


# RANGE_RUN_ENV (set by the entry points): a range run's per-day events stored as one batch
@pytest.mark.parametrize("range_run_env", [False, True])
def test_pooled_event_log_records_what_the_stock_one_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, range_run_env: bool
) -> None:
    for name, value in RANGE_RUN_ENV.items():
        if range_run_env:
            monkeypatch.setenv(name, value)
        else:
            monkeypatch.delenv(name, raising=False)
    stock_home, pooled_home = tmp_path / "stock", tmp_path / "pooled"
    with _instance(stock_home, pooled=False) as stock:
        expected = _history(stock)
    monkeypatch.setenv("DAGSTER_HOME", str(pooled_home))
    batches: list[tuple[str, int]] = []
    store_batch = PooledSqliteEventLogStorage.store_event_batch

    def spy(storage: PooledSqliteEventLogStorage, events: list) -> None:
        types = sorted({event.get_dagster_event().event_type_value for event in events})
        batches.append(("+".join(types), len(events)))
        store_batch(storage, events)

    monkeypatch.setattr(PooledSqliteEventLogStorage, "store_event_batch", spy)
    one_by_one: list[str] = []
    store_one = PooledSqliteEventLogStorage.store_event

    def spy_one(storage: PooledSqliteEventLogStorage, event) -> None:
        one_by_one.append(event.get_dagster_event().event_type_value)
        store_one(storage, event)

    monkeypatch.setattr(PooledSqliteEventLogStorage, "store_event", spy_one)
    with _instance(pooled_home, pooled=True) as pooled:
        assert isinstance(pooled.event_log_storage, PooledSqliteEventLogStorage)
        assert _history(pooled) == expected
        assert len(pooled.event_log_storage._engines) <= 5  # the index and four runs at most
    assert expected["materialized"] == {
        **{f"2020-01-0{d}": 1 for d in (1, 2, 5, 6)},
        "2020-01-03": 2,
        "2020-01-04": 2,
    }
    # with one planned event per asset, a failed range run's days read as missing, not failed
    failed = [] if range_run_env else ["2020-01-08", "2020-01-09"]
    assert expected["attempted_not_materialized"] == failed
    assert expected["latest_partition"] == "2020-01-06"
    assert expected["latest_is_last_stored"]
    assert expected["indexed_tag_keys"]["dagster/data_version"] == 8
    assert expected["materialized_partitions"] == [f"2020-01-0{d}" for d in range(1, 7)]
    assert (pooled_home / "history/runs/index.db").exists()
    # the two successful runs' four days each, stored as one batch each
    materialized = [n for types, n in batches if types == "ASSET_MATERIALIZATION"]
    assert materialized == ([4, 4] if range_run_env else [])
    # ... and not one event at a time
    assert one_by_one.count("ASSET_MATERIALIZATION") == (0 if range_run_env else 8)


def test_a_running_runs_events_reach_a_watcher_as_they_are_written(tmp_path: Path) -> None:
    # the UI follows a running run through `watch`; the pooled storage's connections stay
    # open, so its events sit in the write-ahead log, not yet in the run's database file
    writer = PooledSqliteEventLogStorage(str(tmp_path))
    reader = PooledSqliteEventLogStorage(str(tmp_path))
    run_id = "0123456789abcdef"
    seen: list[str] = []
    arrived = threading.Event()

    def on_event(entry: object, _cursor: str) -> None:
        seen.append(entry.user_message)  # type: ignore[attr-defined]
        if len(seen) == 3:
            arrived.set()

    writer.store_event(_entry(run_id, "first"))
    reader.watch(run_id, None, on_event)
    try:
        for message in ("second", "third", "fourth"):
            writer.store_event(_entry(run_id, message))
            time.sleep(0.2)
        assert arrived.wait(10), seen
        assert seen[:3] == ["first", "second", "third"]
    finally:
        reader.end_watch(run_id, on_event)
        reader.dispose()
        writer.dispose()


def _entry(run_id: str, message: str) -> dg.EventLogEntry:
    return dg.EventLogEntry(
        error_info=None,
        level="INFO",
        user_message=message,
        run_id=run_id,
        timestamp=time.time(),
        dagster_event=None,
    )
