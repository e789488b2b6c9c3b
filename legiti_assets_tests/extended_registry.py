"""The registry with one feature set appended, exactly as README's "Add a feature set" says:
the append is the only change. Run as a script, it builds and serves everything with it:

    python -m legiti_assets_tests.extended_registry DATA_DIR START END OUT_JSON
"""

import datetime as dt
import json
import sys
from pathlib import Path

from butterfree.constants import DataType
from butterfree.transform.aggregated_feature_set import AggregatedFeatureSet
from butterfree.transform.features import Feature, KeyFeature, TimestampFeature
from butterfree.transform.transformations import AggregatedTransform
from butterfree.transform.utils import Function
from pyspark.sql import functions as F

from legiti_assets.feature_sets import FeatureSetSource

DELAYS = FeatureSetSource(
    AggregatedFeatureSet(
        name="user_chargeback_delays",
        entity="user",
        description="How long after their orders each user's chargebacks arrive.",
        keys=[KeyFeature(name="cpf", description="User unique identifier.", dtype=DataType.STRING)],
        timestamp=TimestampFeature(from_column="chargeback_timestamp"),
        features=[
            Feature(
                name="delay_days",
                description="Days from the order to its chargeback.",
                transformation=AggregatedTransform(
                    functions=[
                        Function(F.avg, DataType.DOUBLE),
                        Function(F.max, DataType.DOUBLE),
                        Function(F.min, DataType.DOUBLE),
                        Function(F.sum, DataType.DOUBLE),
                    ]
                ),
            ),
            Feature(
                name="late_chargebacks",
                description="Chargebacks reported more than 30 days after their order.",
                from_column="order_id",
                transformation=AggregatedTransform(
                    functions=[Function(F.count, DataType.INTEGER)],
                    filter_expression="delay_days > 30",
                ),
            ),
        ],
    ).with_windows(definitions=["7 days", "30 days"]),
    source="chargeback_events",
    query="select *, (unix_timestamp(chargeback_timestamp) - unix_timestamp(order_timestamp))"
    " / 86400 as delay_days from chargeback_events",
)


def main(data_dir: Path, start: dt.date, end: dt.date, out: Path) -> None:
    import legiti_assets.feature_sets as registry

    registry.FEATURE_SETS.append(DELAYS)  # the one change

    import dagster as dg
    from starlette.testclient import TestClient

    from legiti_assets import run
    from legiti_assets.definitions import defs
    from legiti_assets.online import open_online_store
    from legiti_assets.resources import OnlineStoreResource
    from legiti_assets_tests.helpers import resources_for

    resources = resources_for(data_dir)
    with dg.DagsterInstance.ephemeral() as instance:
        run.materialize(start, end, instance, resources)
    store = resources["online_store"]
    assert isinstance(store, OnlineStoreResource)
    from legiti_assets.online import server
    from legiti_assets.online.server import create_app

    app = create_app(lambda: open_online_store(store.resolved_url()), server.SERVED_TABLES)
    with TestClient(app) as client:
        served = {key: client.get(f"/features/user/{key}").json() for key in ("x", "y", "nobody")}
    graph = defs.resolve_asset_graph()
    node = graph.get(dg.AssetKey(DELAYS.name))
    schema = node.metadata["dagster/column_schema"]
    out.write_text(
        json.dumps(
            {
                "served": served,
                "assets": sorted(k.to_user_string() for k in graph.get_all_asset_keys()),
                "checks": sorted(
                    k.to_user_string() for k in graph.asset_check_keys if k.asset_key == node.key
                ),
                "schema": [[c.name, c.type, c.description] for c in schema.columns],
                "code_version": node.code_version,
            }
        )
    )


if __name__ == "__main__":
    args = sys.argv[1:]
    main(
        Path(args[0]), dt.date.fromisoformat(args[1]), dt.date.fromisoformat(args[2]), Path(args[3])
    )
