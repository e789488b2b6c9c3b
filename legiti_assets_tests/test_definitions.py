"""The definitions load and describe themselves the way the UI shows them."""

import datetime as dt
import os
import subprocess
import sys
from dataclasses import replace

import dagster as dg
import pytest

from legiti_assets.assets.feature_store import freshness_policy
from legiti_assets.definitions import definitions, defs
from legiti_assets.engine import DeclarationError, feature_set_spec
from legiti_assets.executor import build_resources
from legiti_assets.feature_sets import FEATURE_SETS
from legiti_assets.partitions import daily_partitions
from legiti_assets.resources import DataDir, SparkResource
from legiti_assets.settings import FIRST_DAY_ENV, SENSOR_INTERVAL_ENV, Settings, first_day
from legiti_assets_tests.imports import cycles, import_graph

ASSET_GROUPS = {
    "order_events": "raw",
    "chargeback_events": "raw",
    "user_orders": "feature_store",
    "user_chargebacks": "feature_store",
    "awesome_dataset": "datasets",
    "user_orders_online": "online_store",
    "user_chargebacks_online": "online_store",
}


def _specs() -> dict[str, dg.AssetSpec]:
    graph = defs.resolve_asset_graph()
    return {key.to_user_string(): graph.get(key) for key in graph.get_all_asset_keys()}


def test_every_asset_is_described_grouped_and_typed() -> None:
    nodes = _specs()
    assert set(nodes) == set(ASSET_GROUPS)
    for name, node in nodes.items():
        assert node.group_name == ASSET_GROUPS[name]
        assert node.description
        assert "spark" in node.kinds
        if node.group_name != "online_store":
            schema = node.metadata["dagster/column_schema"]
            assert all(column.description for column in schema.columns), name


def test_lineage_from_events_to_the_training_set() -> None:
    nodes = _specs()
    parents = {name: {k.to_user_string() for k in n.parent_keys} for name, n in nodes.items()}
    assert parents["user_orders"] == {"order_events"}
    assert parents["user_chargebacks"] == {"chargeback_events"}
    assert parents["awesome_dataset"] == {"order_events", "user_orders", "user_chargebacks"}
    assert parents["user_orders_online"] == {"user_orders"}
    assert parents["user_chargebacks_online"] == {"user_chargebacks"}


def test_time_partitioned_assets_share_one_daily_definition() -> None:
    nodes = _specs()
    for name in set(ASSET_GROUPS) - {"awesome_dataset"}:
        assert nodes[name].partitions_def == daily_partitions
        assert nodes[name].backfill_policy == dg.BackfillPolicy.single_run()
    assert nodes["awesome_dataset"].partitions_def is None


def test_partitions_start_at_the_first_day_a_setting_names() -> None:
    # the sample's first order day, unless the environment names another
    assert daily_partitions.start.date() == dt.date(2018, 5, 12)
    assert daily_partitions.get_first_partition_key() == "2018-05-12"
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "from legiti_assets.definitions import defs\n"
            "from legiti_assets.observe import declarations\n"
            "graph = defs.resolve_asset_graph()\n"
            "starts = {graph.get(k).partitions_def.get_first_partition_key()\n"
            "          for k in graph.get_all_asset_keys() if graph.get(k).partitions_def}\n"
            "print(sorted(starts), declarations().first_day)",
        ],
        env={**os.environ, FIRST_DAY_ENV: "2016-02-29"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")[-2]
    assert shown == "['2016-02-29'] 2016-02-29"
    for wrong in ("2016-02-30", "20160229", "1969-12-31", "yesterday"):
        with pytest.raises(ValueError, match=f"{FIRST_DAY_ENV}='{wrong}': expected a day"):
            first_day({FIRST_DAY_ENV: wrong})


def test_feature_sets_show_entity_key_and_windows() -> None:
    node = _specs()["user_orders"]
    assert node.metadata["entity"] == "user"
    assert node.metadata["key"] == "cpf"
    assert node.metadata["windows"] == "3 days, 7 days, 30 days"


def test_checks_sit_on_every_asset() -> None:
    graph = defs.resolve_asset_graph()
    checked = {key.asset_key.to_user_string() for key in graph.asset_check_keys}
    assert checked == set(ASSET_GROUPS)


def test_definitions_is_the_top_and_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "legiti_assets.definitions" in graph and "legiti_assets.planner" in graph
    assert [m for m, targets in graph.items() if "legiti_assets.definitions" in targets] == []
    assert cycles(graph) == []
    # imports inside functions count (the root package imports retrieval in one), and so does
    # the package `__init__` that importing one of its modules runs
    assert "legiti_assets.retrieval" in graph["legiti_assets"]
    assert "legiti_assets.assets" in graph["legiti_assets.jobs"]
    assert cycles({**graph, "legiti_assets.records": {"legiti_assets.planner"}}) == [
        ["legiti_assets.planner", "legiti_assets.records"]
    ]


def test_the_planner_needs_neither_spark_nor_dagster() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, legiti_assets.planner; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "legiti_assets.planner" in loaded
    assert not [m for m in loaded if m.split(".")[0] in ("pyspark", "dagster", "py4j")]


@pytest.mark.parametrize(
    ("module", "what_to_do"),
    [
        ("legiti_assets.event_log", "Remove the event_log_storage block"),
        ("legiti_assets.attribution", "Check JobDefinition.execute_in_process"),
    ],
)
def test_the_modules_on_dagster_internals_refuse_an_unverified_version(
    module: str, what_to_do: str
) -> None:
    script = f"import dagster; dagster.__version__ = '1.99.0'\nimport {module}\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode != 0
    assert f"ImportError: {module}" in done.stderr
    assert "verified with Dagster 1.13.27, not 1.99.0" in done.stderr
    assert what_to_do in done.stderr


def test_the_sensor_interval_is_a_setting() -> None:
    assert Settings.from_env({}).sensor_interval_seconds == 30
    settings = Settings.from_env({SENSOR_INTERVAL_ENV: "120"})
    built = definitions(build_resources(DataDir(), SparkResource()), settings)
    (sensor,) = built.sensors or []
    assert sensor.name == "landing_sensor" and sensor.minimum_interval_seconds == 120
    with pytest.raises(ValueError, match=f"{SENSOR_INTERVAL_ENV}='0'"):
        Settings.from_env({SENSOR_INTERVAL_ENV: "0"})


def test_feature_sets_declare_when_their_newest_day_must_exist() -> None:
    nodes = _specs()
    for name, node in nodes.items():
        if ASSET_GROUPS[name] == "feature_store":
            # day D between 00:00 and 01:00 UTC, the registry's default
            assert node.freshness_policy == dg.FreshnessPolicy.cron(
                deadline_cron="0 1 * * *", lower_bound_delta=dt.timedelta(hours=1)
            )
        else:
            assert node.freshness_policy is None, name
    assert freshness_policy(dt.time(6, 30)) == dg.FreshnessPolicy.cron(
        "30 6 * * *", lower_bound_delta=dt.timedelta(hours=6, minutes=30)
    )
    assert freshness_policy(None) is None
    entry = FEATURE_SETS[0]
    for bad in (dt.time(0, 0), dt.time(1, 0, 30), dt.time(1, 0, tzinfo=dt.UTC)):
        with pytest.raises(DeclarationError, match=f"feature set {entry.name}: fresh_by="):
            feature_set_spec(replace(entry, fresh_by=bad))
    assert feature_set_spec(replace(entry, fresh_by=None)).fresh_by is None
