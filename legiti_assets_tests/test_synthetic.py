"""The synthetic landing files: deterministic, valid landing format, realistic enough."""

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from legiti_assets.landing import read_header, read_landing
from legiti_assets.partitions import FIRST_DAY
from legiti_assets.synthetic import SIZES, Size, day_range, generate, write_landing

SMALL = Size(orders=2_000, days=90)


@pytest.fixture(scope="module")
def orders() -> pd.DataFrame:
    return generate(SIZES["10k"], seed=3).to_pandas()


def test_same_seed_same_file_other_seed_other_file(tmp_path: Path) -> None:
    paths = [
        write_landing(generate(SMALL, seed), tmp_path / str(i)) for i, seed in [(0, 1), (1, 1)]
    ]
    assert paths[0].read_bytes() == paths[1].read_bytes()
    other = write_landing(generate(SMALL, seed=2), tmp_path / "2")
    assert other.read_bytes() != paths[0].read_bytes()


def test_shape(orders: pd.DataFrame) -> None:
    size = SIZES["10k"]
    assert len(orders) == size.orders
    assert orders["order_id"].is_unique
    assert orders["cpf"].nunique() == size.users == 2_000
    assert orders["cpf"].str.fullmatch(r"\d{11}").all()
    per_user = orders.groupby("cpf").size()
    assert per_user.max() > 10 * per_user.median()  # heavy tail
    start, end = day_range(size)
    order_ts = pd.to_datetime(orders["order_timestamp"], format="%Y-%m-%d %H:%M:%S")
    assert order_ts.dt.date.min() >= start >= dt.date.fromisoformat(FIRST_DAY)
    assert order_ts.dt.date.max() <= end
    chargeback_ts = pd.to_datetime(orders["chargeback_timestamp"], format="%Y-%m-%d %H:%M:%S")
    charged = chargeback_ts.notna()
    assert 0.015 < charged.mean() < 0.025
    delay = (chargeback_ts - order_ts)[charged]
    assert delay.min() >= pd.Timedelta(days=1)
    assert delay.max() <= pd.Timedelta(days=90)
    assert chargeback_ts.max().year < 2100


def test_the_landing_reader_accepts_it(tmp_path: Path, spark) -> None:
    path = write_landing(generate(SMALL, seed=5), tmp_path)
    assert path.read_text().splitlines()[0] == "order_id,order_timestamp,cpf,chargeback_timestamp"
    assert read_header(str(path)) == ["order_id", "order_timestamp", "cpf", "chargeback_timestamp"]
    batch = read_landing(spark, str(path), dt.date.fromisoformat(FIRST_DAY))
    try:
        assert batch.orders == SMALL.orders
        charged = batch.events.where("chargeback_timestamp is not null").count()
        assert 0 < charged < SMALL.orders // 10
    finally:
        batch.unpersist()
