import os
import shutil
import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from legiti_assets.definitions import build_resources
from legiti_assets.resources import DataDir, SparkResource

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "order_events" / "input.csv"
# collected Spark timestamps are in the process's local time zone: make it UTC like the data
os.environ["TZ"] = "UTC"
time.tzset()

TEST_SPARK = SparkResource(master="local[2]", shuffle_partitions=2, driver_memory="1g")


@pytest.fixture(scope="session")
def spark() -> SparkSession:
    """One Spark session for the whole suite: assets' getOrCreate() reuses it."""
    return TEST_SPARK.get_session()


def write_landing(data_dir: Path, text: str | bytes) -> Path:
    path = data_dir / "order_events" / "input.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def resources_for(data_dir: Path) -> dict[str, object]:
    return build_resources(DataDir(path=str(data_dir)), TEST_SPARK)


@pytest.fixture
def sample_dir(tmp_path: Path, spark: SparkSession) -> Path:
    """A data directory holding the seed's 9-row landing file."""
    (tmp_path / "order_events").mkdir()
    shutil.copy(SAMPLE, tmp_path / "order_events" / "input.csv")
    return tmp_path
