"""Every feature set the platform serves: its butterfree declaration read once, as the spec the
Spark computation uses and as the table the online store keeps."""

from legiti_assets.feature_sets import USER_FEATURE_SETS
from legiti_assets.online_store import FeatureSetTable
from legiti_assets.rolling import RollingCountSpec, rolling_count_spec

SPECS: dict[str, RollingCountSpec] = {fs.name: rolling_count_spec(fs) for fs in USER_FEATURE_SETS}


# The raw event asset each feature set counts.
SOURCES: dict[str, str] = {"user_orders": "order_events", "user_chargebacks": "chargeback_events"}


def online_table(spec: RollingCountSpec) -> FeatureSetTable:
    return FeatureSetTable(
        name=spec.name, key=spec.key, feature_columns=tuple(c.column for c in spec.counts)
    )


ONLINE_TABLES: dict[str, FeatureSetTable] = {
    name: online_table(spec) for name, spec in SPECS.items()
}
