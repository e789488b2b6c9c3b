import os
import shutil
import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

# the tests expect the default first partition, the sample's first day: a deployment's setting
# in the shell must not move it (read when legiti_assets.partitions is first imported, below)
os.environ.pop("LEGITI_FIRST_DAY", None)

from legiti_assets_tests.helpers import SAMPLE, SAMPLE_END, SAMPLE_START, TEST_SPARK

# collected Spark timestamps are in the process's local time zone: make it UTC like the data
os.environ["TZ"] = "UTC"
time.tzset()


@pytest.fixture(scope="session")
def spark() -> SparkSession:
    """One Spark session for the whole suite: assets' getOrCreate() reuses it."""
    return TEST_SPARK.spark_session


@pytest.fixture
def sample_dir(tmp_path: Path, spark: SparkSession) -> Path:
    """A data directory holding the seed's 9-row landing file."""
    (tmp_path / "order_events").mkdir()
    shutil.copy(SAMPLE, tmp_path / "order_events" / "input.csv")
    return tmp_path


@pytest.fixture(scope="module")
def built_sample(spark, tmp_path_factory) -> Path:
    """The sample built by `make awesome-dataset` over its whole range, once per module that
    asks (modules copy it: see their `sample_dir`)."""
    import dagster as dg

    from legiti_assets import run
    from legiti_assets_tests.helpers import resources_for

    data_dir = tmp_path_factory.mktemp("built_sample")
    (data_dir / "order_events").mkdir()
    shutil.copy(SAMPLE, data_dir / "order_events" / "input.csv")
    run.materialize(
        SAMPLE_START, SAMPLE_END, dg.DagsterInstance.ephemeral(), resources_for(data_dir)
    )
    return data_dir
