"""Feature sets of entity `user`, keyed by `cpf`.

Plain butterfree declarations: they name the entity, key, source timestamp, aggregations and
windows, and describe every feature. `legiti_assets.engine` computes them at scale; the
registry in `legiti_assets.feature_sets` binds each to its source.
"""

from butterfree.constants import DataType
from butterfree.transform.aggregated_feature_set import AggregatedFeatureSet
from butterfree.transform.features import Feature, KeyFeature, TimestampFeature
from butterfree.transform.transformations import AggregatedTransform
from butterfree.transform.utils import Function
from pyspark.sql import functions as F

WINDOWS = ["3 days", "7 days", "30 days"]


def _cpf_key() -> KeyFeature:
    return KeyFeature(
        name="cpf",
        description="User unique identifier (the CPF), key of the user entity.",
        dtype=DataType.STRING,
    )


user_orders = AggregatedFeatureSet(
    name="user_orders",
    entity="user",
    description="Orders placed by each user, counted over rolling windows of days.",
    keys=[_cpf_key()],
    timestamp=TimestampFeature(from_column="order_timestamp"),
    features=[
        Feature(
            name="cpf_orders",
            description="Count of the user's orders in the days before the state's day.",
            from_column="order_id",
            transformation=AggregatedTransform(functions=[Function(F.count, DataType.INTEGER)]),
        )
    ],
).with_windows(definitions=WINDOWS)

user_chargebacks = AggregatedFeatureSet(
    name="user_chargebacks",
    entity="user",
    description=(
        "Chargebacks reported against each user's orders, dated by the chargeback, "
        "counted over rolling windows of days."
    ),
    keys=[_cpf_key()],
    timestamp=TimestampFeature(from_column="chargeback_timestamp"),
    features=[
        Feature(
            name="cpf_chargebacks",
            description="Count of the user's chargebacks in the days before the state's day.",
            from_column="order_id",
            transformation=AggregatedTransform(functions=[Function(F.count, DataType.INTEGER)]),
        )
    ],
).with_windows(definitions=WINDOWS)
