import os
import shutil
import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from legiti_assets_tests.helpers import SAMPLE, TEST_SPARK

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
