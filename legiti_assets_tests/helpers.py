"""Reading what the assets stored, the way a user of the store would."""

import datetime as dt
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import pandas as pd

from legiti_assets import storage
from legiti_assets.resources import DataDir, SparkResource

if TYPE_CHECKING:
    from legiti_assets.executor import StepResult

FEATURE_STORE = "feature_store/historical/user"
# Every table the main job writes, under the data directory.
TABLES = [
    "raw/order_events",
    "raw/chargeback_events",
    f"{FEATURE_STORE}/user_orders",
    f"{FEATURE_STORE}/user_chargebacks",
    "datasets/awesome_dataset",
]
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "order_events" / "input.csv"
# `make awesome-dataset`'s default range: every day of the sample
SAMPLE_START, SAMPLE_END = dt.date(2018, 5, 12), dt.date(2020, 7, 17)
TEST_SPARK = SparkResource(master="local[2]", shuffle_partitions=2, driver_memory="1g")


def write_landing(data_dir: Path, text: str | bytes) -> Path:
    path = data_dir / "order_events" / "input.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def resources_for(data_dir: Path, online_url: str | None = None) -> dict[str, object]:
    """Resources over `data_dir`; the online store is SQLite there, or `online_url` with keys
    under a fresh prefix (a Redis database shared by tests and runs stays apart)."""
    from legiti_assets.executor import build_resources
    from legiti_assets.resources import OnlineStoreResource

    data = DataDir(path=str(data_dir))
    store = (
        None
        if online_url is None
        else OnlineStoreResource(data=data, url=online_url, redis_key_prefix=f"t{uuid.uuid4().hex}")
    )
    return build_resources(data, TEST_SPARK, store)


def read_table(path: Path) -> list[tuple]:
    """Rows of a table's latest version, read through `deltalake` as a pandas user would (a
    Parquet directory of the layouts before Delta: its partition columns dropped), sorted,
    with naive UTC datetimes."""
    if storage.is_delta(path):
        df = storage.log(path).to_pandas()
    elif path.exists():
        df = pd.read_parquet(path)
    else:
        return []
    return read_frame(df.drop(columns=[c for c in ("year", "month", "day") if c in df.columns]))


def read_frame(df: pd.DataFrame) -> list[tuple]:
    """A pandas frame's rows, sorted, with naive UTC datetimes and plain Python values."""
    df = df.copy()
    for column in df.columns:
        if isinstance(df[column].dtype, pd.DatetimeTZDtype):
            df[column] = df[column].dt.tz_convert("UTC").dt.tz_localize(None)
    rows = []
    for record in df.itertuples(index=False):
        rows.append(tuple(_plain(v) for v in record))
    return sorted(rows, key=lambda r: tuple((v is None, str(v)) for v in r))


def _plain(value: object) -> object:
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if value is pd.NaT or (isinstance(value, float) and pd.isna(value)):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def feature_rows(data_dir: Path, name: str) -> list[tuple]:
    return read_table(data_dir / FEATURE_STORE / name)


def dataset_rows(data_dir: Path) -> list[tuple]:
    return read_table(data_dir / "datasets" / "awesome_dataset")


def t(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def run_assets(
    assets: Iterable[str],
    instance: dg.DagsterInstance,
    resources: dict[str, object],
    first: dt.date | None = None,
    last: dt.date | None = None,
) -> "StepResult":
    """One run of `assets` over first..last (None: unpartitioned), as the executor runs a step."""
    from legiti_assets.executor import run_step
    from legiti_assets.planner import Step

    return run_step(Step(tuple(assets), first, last, ("a test's run",)), instance, resources)


def raw_assets() -> list[str]:
    """The raw tables: `ingest_events`'s assets."""
    from legiti_assets.assets.raw import DATED_BY

    return list(DATED_BY)


def feature_assets() -> list[str]:
    """The feature sets, their online mirrors and the training sets: `compute_features`'s."""
    from legiti_assets.catalog import SPECS, TRAINING, online_name

    return [*SPECS, *(online_name(n) for n in SPECS), *TRAINING]
