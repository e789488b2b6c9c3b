"""A feature set's freshness policy in the UI, passing and then missed, as Dagster's daemon
evaluates it. The feature sets' deadline is 01:00 UTC; here it is each minute
(`minute_freshness.py`), so the test sees a deadline pass without waiting for a night.

Needs `LEGITI_UI_TESTS=1` (`make test-ui`); saves docs/screenshots/freshness-*.png.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import dagster as dg
import pytest
from playwright.sync_api import Page, expect

from legiti_assets_tests.cluster.processes import (
    REPO,
    sample_env,
)
from legiti_assets_tests.ui.servers import daemon_and_webserver, graphql
from legiti_assets_tests.ui.test_ui import _screenshot

pytestmark = pytest.mark.timeout(900)

STATUS_QUERY = "{ assetNodes { assetKey { path } freshnessStatusInfo { freshnessStatus } } }"


def _status(url: str, asset: str) -> str | None:
    nodes = graphql(url, STATUS_QUERY)["assetNodes"]
    (node,) = [n for n in nodes if n["assetKey"]["path"] == [asset]]
    return (node["freshnessStatusInfo"] or {}).get("freshnessStatus")


@pytest.fixture(scope="module")
def freshness_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict]]:
    """A webserver and a daemon (the freshness daemon every 5 s) over the minute deadlines."""
    tmp = tmp_path_factory.mktemp("freshness")
    env = sample_env(tmp, FRESHNESS_DAEMON_INTERVAL_SECONDS="5")
    workspace = tmp / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_module:\n"
        "      module_name: legiti_assets_tests.ui.minute_freshness\n"
        f"      working_directory: {REPO}\n"
    )
    with daemon_and_webserver(env, workspace, tmp) as url:
        yield url, env


def test_a_missed_deadline_shows_in_the_ui(freshness_ui, page: Page, monkeypatch) -> None:
    url, env = freshness_ui
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    # a materialization now, as the daily run's would be: the policy passes
    with dg.DagsterInstance.get() as instance:
        instance.report_runless_asset_event(
            dg.AssetMaterialization("user_orders", partition="2020-07-17")
        )
    began = time.monotonic()
    deadline = began + 60
    while _status(url, "user_orders") != "HEALTHY":
        assert time.monotonic() < deadline, "the policy did not pass after a materialization"
        time.sleep(2)
    page.goto(f"{url}/assets/user_orders")
    policy = page.locator("text=Freshness policy").first
    expect(policy).to_be_visible()
    expect(page.get_by_text("Passing", exact=True).first).to_be_visible()
    expect(page.get_by_text("Deadline: Every minute")).to_be_visible()
    _screenshot(page, "freshness-passing")
    # no materialization since: once a deadline a minute after it has passed, it is missed
    deadline = time.monotonic() + 240
    while _status(url, "user_orders") != "DEGRADED":
        assert time.monotonic() < deadline, "the missed deadline did not show"
        time.sleep(5)
    assert time.monotonic() - began >= 60  # not before a whole minute without one
    page.reload()
    expect(page.get_by_text("Failed", exact=True).first).to_be_visible()
    _screenshot(page, "freshness-missed")
    # a feature set never materialized has no state to judge
    assert _status(url, "user_chargebacks") == "UNKNOWN"
    assert _status(url, "order_events") is None  # no policy on the raw tables
