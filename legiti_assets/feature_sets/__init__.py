"""butterfree declarations of every feature set, grouped by entity."""

from legiti_assets.feature_sets.user import USER_FEATURE_SETS, user_chargebacks, user_orders

__all__ = ["USER_FEATURE_SETS", "user_chargebacks", "user_orders"]
