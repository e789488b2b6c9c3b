"""Every asset and standalone asset check, derived from the registry (`legiti_assets.catalog`):
the raw event tables, the feature sets' daily states, their online mirrors and the training
sets, in the order data flows."""

from legiti_assets.assets.datasets import TRAINING_SET_ASSETS
from legiti_assets.assets.feature_store import FEATURE_SET_ASSETS
from legiti_assets.assets.online import ONLINE_ASSETS, ONLINE_CHECKS
from legiti_assets.assets.raw import order_and_chargeback_events

ASSETS = [order_and_chargeback_events, *FEATURE_SET_ASSETS, *ONLINE_ASSETS, *TRAINING_SET_ASSETS]
ASSET_CHECKS = ONLINE_CHECKS
