"""The benchmark's DuckDB reference, the oracle `make bench` checks our outputs against, gives
the hand-worked rows of the sample by both of its routes."""

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from benchmarks import duckdb_reference
from legiti_assets_tests.test_end_to_end import AWESOME_DATASET, USER_CHARGEBACKS, USER_ORDERS

SAMPLE = Path(__file__).resolve().parents[1] / "data/order_events/input.csv"


def _rows(df: pd.DataFrame) -> list[tuple]:
    def plain(value: object) -> object:
        if value is None or value is pd.NaT or (isinstance(value, float) and pd.isna(value)):
            return None
        if isinstance(value, pd.Timestamp):
            return value.to_pydatetime()
        return value.item() if hasattr(value, "item") else value

    return sorted(tuple(plain(v) for v in row) for row in df.itertuples(index=False))


@pytest.mark.parametrize("by_definition", [False, True])
def test_reference_equals_the_contract_on_the_sample(by_definition: bool) -> None:
    ref = duckdb_reference.compute(
        SAMPLE, dt.date(2018, 5, 12), dt.date(2020, 7, 17), by_definition=by_definition
    )
    assert _rows(ref.user_orders) == USER_ORDERS
    assert _rows(ref.user_chargebacks) == USER_CHARGEBACKS
    assert _rows(ref.awesome_dataset) == AWESOME_DATASET
