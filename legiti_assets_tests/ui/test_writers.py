"""Writers never overlap, whoever launches them: a backfill launched as the UI launches it (the
`launchPartitionBackfill` mutation) while the landing sensor's update runs waits in the queue,
and starts once the update has finished. Dagster's daemon and webserver over the repository's
workspace and dagster.yaml, on a copy of the sample.

Needs `LEGITI_UI_TESTS=1` (`make test-ui`); saves docs/screenshots/backfill-queued.png.
"""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from legiti_assets_tests.cluster.processes import (
    REPO,
    free_port,
    init_instance,
    sample_env,
    start,
    stop,
    wait_until,
)
from legiti_assets_tests.ui.conftest import _locations_loaded
from legiti_assets_tests.ui.test_ui import _screenshot

pytestmark = pytest.mark.timeout(1500)

RUNS = """query($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs { results {
  runId jobName status startTime endTime tags { key value } } } } }"""
BACKFILL = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams:
  $params) { __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
  ... on UnauthorizedError { message } } }"""


def _graphql(url: str, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        found = json.load(response)
    assert "errors" not in found, found
    return found["data"]


def _runs(url: str, **run_filter: object) -> list[dict]:
    return _graphql(url, RUNS, {"filter": run_filter})["runsOrError"]["results"]


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
    init_instance(env)
    bin_dir = Path(sys.executable).parent
    workspace = str(REPO / "workspace.yaml")
    daemon = start([str(bin_dir / "dagster-daemon"), "run", "-w", workspace], env, tmp / "d.log")
    port = free_port()
    webserver = [str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port)]
    server = start([*webserver, "-w", workspace], env, tmp / "w.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _locations_loaded(url), 180, "dagster-webserver", server, tmp / "w.log")
        yield url
    finally:
        stop(server)
        stop(daemon)


def test_a_ui_backfill_waits_for_the_update_that_runs(dagster_dev: str, page: Page) -> None:
    url = dagster_dev
    # the sensor's first tick: an update builds the store from the landing
    (update,) = _wait(
        "the sensor's update run",
        lambda: _runs(url, pipelineName="update", statuses=["STARTED"]),
        240,
    )
    launched = _graphql(
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
