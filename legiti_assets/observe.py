"""What the planner reads, read from where it lives: the registry (`declarations`), the store's
records and the online store's (`stored`: Delta logs and the online store, no Spark), and the
landing's day fingerprints (`landing`: Spark, since they are the fingerprints the raw tables
record of the same rows)."""

import datetime as dt

from pyspark.sql import SparkSession

from legiti_assets import changes, layout, storage
from legiti_assets.assets.datasets import training_set_inputs
from legiti_assets.assets.raw import DATED_BY
from legiti_assets.catalog import ONLINE_TABLES, SPECS, TRAINING, online_name
from legiti_assets.io_managers import INPUTS
from legiti_assets.landing import read_landing_dir, release
from legiti_assets.online import OnlineStore
from legiti_assets.partitions import FIRST_DAY
from legiti_assets.planner import Declarations, FeatureSet, Stored
from legiti_assets.resources import DataDir


def declarations() -> Declarations:
    """The registry, as the planner sees it."""
    return Declarations(
        first_day=dt.date.fromisoformat(FIRST_DAY),
        raw_tables=tuple(DATED_BY),
        feature_sets={
            name: FeatureSet(
                source=spec.source,
                version=spec.version,
                lookback_days=spec.lookback_days,
                online=online_name(name),
            )
            for name, spec in SPECS.items()
        },
        training_sets={
            name: (training_set.spine, *(s.name for s in specs))
            for name, (training_set, specs) in TRAINING.items()
        },
    )


def training_current(data_dir: DataDir, name: str) -> bool:
    """Whether a stored training set was built from its input tables as they are now."""
    training_set, specs = TRAINING[name]
    commit = storage.latest_commit(data_dir.resolve(layout.dataset_table(name)))
    built_from = None if commit is None else commit.facts.get(INPUTS)
    inputs = {data_dir.resolve(t): None for t in training_set_inputs(training_set, specs)}
    return built_from is not None and built_from == changes.tables_fingerprint(inputs)


def stored(data_dir: DataDir, online: OnlineStore | None = None) -> Stored:
    """The records of every daily table and the training sets' state; with `online`, the day
    each online table mirrors (without it, the planner takes every day as mirrored)."""
    features = {
        name: storage.recorded(data_dir.resolve(layout.feature_set_table(spec.entity, name)))
        for name, spec in SPECS.items()
    }
    mirrored = (
        {
            name: {
                dt.date.fromisoformat(day): token
                for day, token in online.mirrored(ONLINE_TABLES[name]).items()
            }
            for name in SPECS
        }
        if online is not None
        else {name: {day: r.token for day, r in days.items()} for name, days in features.items()}
    )
    return Stored(
        raw={name: storage.recorded(data_dir.resolve(layout.raw_table(name))) for name in DATED_BY},
        features=features,
        mirrored=mirrored,
        training_current={name: training_current(data_dir, name) for name in TRAINING},
    )


def landing(spark: SparkSession, data_dir: DataDir) -> tuple[dict[str, dict[dt.date, str]], int]:
    """Each raw table's day fingerprints of the landing as it is now, and its number of
    orders; raise LandingFileError naming the file, line and field of invalid input."""
    batch = read_landing_dir(spark, data_dir.landing_dir, dt.date.fromisoformat(FIRST_DAY))
    try:
        fingerprints = {
            name: {day: found.content for day, found in days.items()}
            for name, days in batch.raw_days.items()
        }
        return fingerprints, batch.orders
    finally:
        release(batch)
