"""The registry: every feature set and training set the platform builds, serves and checks.

Append a `FeatureSetSource` to `FEATURE_SETS` and nothing else: its daily asset, checks,
lookback, online table and asset, HTTP serving and UI metadata all derive from this list.
"""

from legiti_assets.feature_sets.declarations import FeatureSetSource, TrainingSet
from legiti_assets.feature_sets.user import user_chargebacks, user_orders

__all__ = ["FEATURE_SETS", "TRAINING_SETS", "FeatureSetSource", "TrainingSet"]

TRAINING_SETS = [
    TrainingSet(
        name="awesome_dataset",
        description="Every order with its user's feature states at the order's time; "
        "the label is the chargeback.",
        spine="order_events",
        timestamp="order_timestamp",
        label="chargeback_timestamp",
        feature_sets=(user_orders, user_chargebacks),
    )
]

FEATURE_SETS = [
    FeatureSetSource(user_orders, source="order_events"),
    FeatureSetSource(user_chargebacks, source="chargeback_events"),
]
