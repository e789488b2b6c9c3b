"""The assets with every feature set's freshness deadline at each minute instead of 01:00 UTC:
a policy that passes right after a materialization and is missed a minute or two later, which
a browser test can wait for. Resources as `legiti_assets.definitions` binds them."""

import datetime as dt

import dagster as dg

from legiti_assets.assets import ASSET_CHECKS, ASSETS
from legiti_assets.executor import build_resources
from legiti_assets.resources import DataDir, SparkResource

EVERY_MINUTE = dg.FreshnessPolicy.cron("* * * * *", lower_bound_delta=dt.timedelta(minutes=1))


def _every_minute(spec: dg.AssetSpec) -> dg.AssetSpec:
    if spec.freshness_policy is None:
        return spec
    return spec.replace_attributes(freshness_policy=EVERY_MINUTE)


defs = dg.Definitions(
    assets=dg.map_asset_specs(_every_minute, ASSETS),
    asset_checks=ASSET_CHECKS,
    resources=build_resources(DataDir(), SparkResource()),
)
