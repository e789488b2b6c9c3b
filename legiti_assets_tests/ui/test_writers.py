"""Writers never overlap, whoever launches them: a backfill launched as the UI launches it (the
`launchPartitionBackfill` mutation) while the landing sensor's update runs waits in the queue,
and starts once the update has finished. Dagster's daemon and webserver over the repository's
workspace and deploy/dagster.yaml, on a copy of the sample.

Needs `LEGITI_UI_TESTS=1` (`make test-ui`); saves docs/screenshots/backfill-queued.png.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from legiti_assets_tests.cluster.processes import (
    REPO,
    sample_env,
)
from legiti_assets_tests.ui.servers import daemon_and_webserver, graphql
from legiti_assets_tests.ui.test_ui import _screenshot

pytestmark = pytest.mark.timeout(1500)

RUNS = """query($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs { results {
  runId jobName status startTime endTime tags { key value } } } } }"""
BACKFILL = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams:
  $params) { __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
  ... on UnauthorizedError { message } } }"""


def _runs(url: str, **run_filter: object) -> list[dict]:
    return graphql(url, RUNS, {"filter": run_filter})["runsOrError"]["results"]


def _wait(what: str, ready, timeout: float) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = ready()
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"{what}: not after {timeout} s")


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`make dev` on a copy of the sample (not yet built): the daemon and the webserver."""
    tmp = tmp_path_factory.mktemp("writers")
    env = sample_env(tmp, LEGITI_SENSOR_INTERVAL_SECONDS="5")
    with daemon_and_webserver(env, REPO / "workspace.yaml", tmp) as url:
        yield url


def test_a_ui_backfill_waits_for_the_update_that_runs(dagster_dev: str, page: Page) -> None:
    url = dagster_dev
    # the sensor's first tick: an update builds the store from the landing
    (update,) = _wait(
        "the sensor's update run",
        lambda: _runs(url, pipelineName="update", statuses=["STARTED"]),
        240,
    )
    launched = graphql(
        url,
        BACKFILL,
        {
            "params": {
                "assetSelection": [{"path": ["user_orders"]}],
                "partitionNames": ["2020-07-17"],
                "fromFailure": False,
            }
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    tag = {"key": "dagster/backfill", "value": launched["backfillId"]}
    (backfill,) = _wait("the backfill's run", lambda: _runs(url, tags=[tag]), 120)
    # no job's tag on it: only the pool of its asset (`WRITER_POOL`) can hold it back
    assert "legiti/writes" not in {t["key"] for t in backfill["tags"]}
    seen_queued = False
    shot = False
    while _runs(url, runIds=[update["runId"]])[0]["status"] == "STARTED":
        (now,) = _runs(url, tags=[tag])
        assert now["status"] in ("QUEUED", "NOT_STARTED"), now
        seen_queued = True
        if not shot:
            # the queued runs, the backfill's among them, while the update is in progress
            page.goto(f"{url}/runs")
            page.get_by_text("Show runs within backfills").click()
            page.get_by_text(re.compile(r"^Queued \(\d+\)$")).click()
            expect(page.get_by_text("user_orders").first).to_be_visible()
            expect(page.get_by_text("Queued", exact=True).first).to_be_visible()
            _screenshot(page, "backfill-queued")
            shot = True
        time.sleep(2)
    assert seen_queued
    (done,) = _runs(url, runIds=[update["runId"]])
    assert done["status"] == "SUCCESS", done
    (ran,) = _wait(
        "the backfill's run to finish",
        lambda: [r for r in _runs(url, tags=[tag]) if r["status"] in ("SUCCESS", "FAILURE")],
        600,
    )
    assert ran["status"] == "SUCCESS", ran
    assert ran["startTime"] >= done["endTime"]
