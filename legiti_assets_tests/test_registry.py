"""Appending one entry to FEATURE_SETS, and changing nothing else, gives the feature set end to
end: historical store, online store, HTTP serving, UI metadata, checks."""

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from legiti_assets.engine import compute_states, feature_set_spec, with_query
from legiti_assets_tests import oracle
from legiti_assets_tests.extended_registry import DELAYS
from legiti_assets_tests.helpers import dataset_rows, feature_rows, read_table, t
from legiti_assets_tests.sample import AWESOME_DATASET, USER_CHARGEBACKS, USER_ORDERS

SPEC = feature_set_spec(DELAYS)
# x's chargebacks: e 1 day 5 h after its order (2020-05-12 20:00), f 49 days 14 h after
# (2020-07-01 11:00), g 61 days 14 h after (2020-07-14 12:00).
E, F, G = 1 + 5 / 24, 49 + 14 / 24, 61 + 14 / 24


@pytest.fixture(scope="module")
def extended(tmp_path_factory, spark) -> tuple[Path, dict]:
    data_dir = tmp_path_factory.mktemp("extended")
    (data_dir / "order_events").mkdir()
    (data_dir / "order_events" / "input.csv").write_bytes(
        (Path(__file__).parents[1] / "data" / "order_events" / "input.csv").read_bytes()
    )
    out = data_dir / "out.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "legiti_assets_tests.extended_registry",
            str(data_dir),
            "2018-05-12",
            "2020-07-17",
            str(out),
        ],
        check=True,
        cwd=Path(__file__).parents[1],
    )
    return data_dir, json.loads(out.read_text())


def test_the_new_feature_set_equals_butterfree(extended, spark) -> None:
    data_dir, _ = extended
    events = spark.read.parquet(str(data_dir / "raw" / "chargeback_events"))
    theirs = oracle.butterfree_rows(
        with_query(events, SPEC),
        SPEC,
        DELAYS.feature_set,
        dt.date(2018, 5, 12),
        dt.date(2020, 7, 17),
    )
    ours = sorted(
        (r for r in read_table(data_dir / "feature_store/historical/user/user_chargeback_delays")),
        key=lambda r: (r[0], r[1]),
    )
    oracle.assert_same_rows(ours, theirs, SPEC)
    assert oracle.engine_rows(
        compute_states(events, SPEC, dt.date(2018, 5, 12), dt.date(2020, 7, 17))
    ) == [tuple(r) for r in ours]
    # avg, max, min, sum over 7 and 30 days, then the filtered count
    assert [r[1:] for r in ours] == [
        (t("2020-05-13"), E, E, E, E, E, E, E, E, 0, 0),
        (t("2020-05-20"), None, E, None, E, None, E, None, E, 0, 0),
        (t("2020-06-12"), None, None, None, None, None, None, None, None, 0, 0),
        (t("2020-07-02"), F, F, F, F, F, F, F, F, 1, 1),
        (t("2020-07-09"), None, F, None, F, None, F, None, F, 0, 1),
        (t("2020-07-15"), G, (F + G) / 2, G, G, G, F, G, F + G, 1, 2),
    ]


def test_it_is_served_with_json_numbers_and_nulls(extended) -> None:
    _, out = extended
    x, y = out["served"]["x"], out["served"]["y"]
    assert x["timestamps"]["user_chargeback_delays"] == "2020-07-15T00:00:00+00:00"
    assert x["features"]["delay_days__avg_over_30_days_rolling_windows"] == (F + G) / 2
    assert x["features"]["late_chargebacks__count_over_30_days_rolling_windows"] == 2
    assert y["features"]["delay_days__max_over_7_days_rolling_windows"] is None
    assert y["features"]["late_chargebacks__count_over_7_days_rolling_windows"] == 0
    assert y["timestamps"]["user_chargeback_delays"] is None
    # the existing sets are served as before
    assert x["features"]["cpf_chargebacks__count_over_30_days_rolling_windows"] == 2


def test_it_is_in_the_ui_with_its_schema_and_checks(extended) -> None:
    _, out = extended
    assert {"user_chargeback_delays", "user_chargeback_delays_online"} <= set(out["assets"])
    assert out["schema"][:3] == [
        ["cpf", "string", "User unique identifier."],
        ["timestamp", "timestamp", "Day (00:00 UTC) from which this state holds."],
        [
            "delay_days__avg_over_7_days_rolling_windows",
            "double",
            "Days from the order to its chargeback. Aggregate: avg over 7 days.",
        ],
    ]
    assert out["schema"][-1] == [
        "late_chargebacks__count_over_30_days_rolling_windows",
        "int",
        "Chargebacks reported more than 30 days after their order. "
        "Aggregate: count over 30 days, where delay_days > 30.",
    ]
    assert [c.split(":")[1] for c in out["checks"]] == [
        "counts_grow_with_window",
        "dated_inside_partition",
        "lookback_materialized",
        "non_negative_counts",
        "non_null_key_and_timestamp",
        "unique_key_and_timestamp",
    ]
    assert out["code_version"] == SPEC.version


def test_the_seed_outputs_do_not_change(extended) -> None:
    data_dir, _ = extended
    assert feature_rows(data_dir, "user_orders") == USER_ORDERS
    assert feature_rows(data_dir, "user_chargebacks") == USER_CHARGEBACKS
    assert dataset_rows(data_dir) == AWESOME_DATASET
