"""The definitions load and describe themselves the way the UI shows them."""

import dagster as dg

from legiti_assets.definitions import defs
from legiti_assets.partitions import daily_partitions

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


def test_feature_sets_show_entity_key_and_windows() -> None:
    node = _specs()["user_orders"]
    assert node.metadata["entity"] == "user"
    assert node.metadata["key"] == "cpf"
    assert node.metadata["windows"] == "3 days, 7 days, 30 days"


def test_checks_sit_on_every_asset() -> None:
    graph = defs.resolve_asset_graph()
    checked = {key.asset_key.to_user_string() for key in graph.asset_check_keys}
    assert checked == set(ASSET_GROUPS)
