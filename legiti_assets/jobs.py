"""The asset jobs every run of the store is a run of (the UI's Jobs page lists them with the
`update` job, `legiti_assets.update`):

- `ingest_events`: the raw event tables for a day or a range of days.
- `compute_features`: the feature sets' daily states for a day or a range, mirrored into the online
  store, and the training sets rebuilt from them.

Every run of these writes the store, so runs carry `WRITER_TAG`: deploy/dagster.yaml lets the run
queue start one of them at a time, so a queued run reads what the previous one wrote.
"""

from collections.abc import Iterable

import dagster as dg

from legiti_assets.assets.raw import DATED_BY
from legiti_assets.partitions import daily_partitions

WRITER_TAG = "legiti/writes"
WRITER_TAGS = {WRITER_TAG: "store"}

INGEST_EVENTS = "ingest_events"
COMPUTE_FEATURES = "compute_features"

ingest_events_job = dg.define_asset_job(
    INGEST_EVENTS,
    selection=dg.AssetSelection.groups("raw"),
    partitions_def=daily_partitions,
    description="Ingest the landing's events of a day or a range of days into the raw tables.",
    tags=WRITER_TAGS,
)

compute_features_job = dg.define_asset_job(
    COMPUTE_FEATURES,
    selection=dg.AssetSelection.groups("feature_store", "online_store", "datasets"),
    partitions_def=daily_partitions,
    description="Compute the feature sets' states of a day or a range of days from the raw "
    "events, mirror them into the online store, and rebuild the training sets.",
    tags=WRITER_TAGS,
)

ASSET_JOBS = [ingest_events_job, compute_features_job]


def job_for(assets: Iterable[str]) -> str:
    """The job whose selection holds these assets: the raw tables are ingested on their own."""
    return INGEST_EVENTS if set(assets) <= set(DATED_BY) else COMPUTE_FEATURES
