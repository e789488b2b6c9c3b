"""Writers never overlap, whoever launches them: a backfill launched as the UI launches it (the
`launchPartitionBackfill` mutation) while the landing sensor's update runs waits in the queue,
and starts once the update has finished. Dagster's daemon and webserver over the repository's
workspace and deploy/dagster.yaml, on a copy of the sample.

Then the Runs page and a job's page show what launched each run, and the lineage's collapsed
groups read materialized: the update stored every partition through today.

Needs `LEGITI_UI_TESTS=1` (`make test-ui`); saves docs/screenshots/backfill-queued.png,
runs-launched-by-sensor.png, job-runs.png and lineage-groups.png.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Locator, Page, expect

from legiti_assets.definitions import defs
from legiti_assets_tests.cluster.processes import (
    REPO,
    sample_env,
)
from legiti_assets_tests.ui.servers import daemon_and_webserver, graphql
from legiti_assets_tests.ui.test_ui import _screenshot

pytestmark = pytest.mark.timeout(1500)

LOCATION = "__repository__@legiti_assets.definitions"  # workspace.yaml's code location
RUNS = """query($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs { results {
  runId jobName status startTime endTime tags { key value } } } } }"""
BACKFILL = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams:
  $params) { __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
  ... on UnauthorizedError { message } } }"""


ORIGINS = """query($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs { results {
  runId jobName pipelineSnapshotId parentPipelineSnapshotId
  repositoryOrigin { repositoryName repositoryLocationName } } } } }"""
JOBS = """{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError {
  ... on RepositoryLocation { repositories { name pipelines { name pipelineSnapshotId } } } }
  } } } }"""


def _loaded_jobs(url: str) -> dict[tuple[str, str, str], str]:
    """(location, repository, job) -> the snapshot id of the job as the webserver loaded it."""
    found = {}
    for entry in graphql(url, JOBS)["workspaceOrError"]["locationEntries"]:
        for repository in entry["locationOrLoadError"]["repositories"]:
            for job in repository["pipelines"]:
                key = (entry["name"], repository["name"], job["name"])
                found[key] = job["pipelineSnapshotId"]
    return found


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


def test_the_runs_page_names_the_sensor_behind_every_update_run(
    dagster_dev: str, page: Page
) -> None:
    """After the test above: the sensor's update and the runs it executed are the code
    location's, launched by the sensor; the backfill's run is the backfill's."""
    url = dagster_dev
    (update,) = [r for r in _runs(url, pipelineName="update") if r["status"] == "SUCCESS"][-1:]
    inner = _runs(url, tags=[{"key": "legiti/launched_in_run", "value": update["runId"]}])
    # the raw tables, the feature sets with their online mirrors, the training set
    assert sorted(r["jobName"] for r in inner) == [
        "compute_features",
        "compute_features",
        "ingest_events",
    ]
    for run in [update, *inner]:
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert tags["dagster/sensor_name"] == "landing_sensor", run
        assert run["status"] == "SUCCESS", run
    # the update's report is on its own run
    update_tags = {t["key"]: t["value"] for t in update["tags"]}
    # the sample's days and every day since, through the day the update ran
    first, today = dt.date(2018, 5, 12), dt.date.fromisoformat(update_tags["legiti/through"])
    assert abs(today - dt.datetime.now(dt.UTC).date()) <= dt.timedelta(days=1)
    days = (today - first).days + 1
    assert update_tags["legiti/ingested/order_events"] == f"{days} days: {first}..{today}"
    # what the UI compares to warn that a re-execution "may be a different version": the run's
    # code location and the snapshot of the job it ran (its parent's, for an asset subset)
    loaded = _loaded_jobs(url)
    ids = [update["runId"], *(r["runId"] for r in inner)]
    for run in graphql(url, ORIGINS, {"filter": {"runIds": ids}})["runsOrError"]["results"]:
        origin = run["repositoryOrigin"]
        key = (origin["repositoryLocationName"], origin["repositoryName"], run["jobName"])
        ran = run["parentPipelineSnapshotId"] or run["pipelineSnapshotId"]
        assert loaded[key] == ran, run
    page.goto(f"{url}/runs")
    expect(page.locator(f'a[href="/runs/{update["runId"]}"]').first).to_be_visible()
    # "Launched by" links each of the four to the sensor; only the backfill, which the test
    # launched as a person would, reads "Manually launched"
    launched_by = page.locator('a[href$="/sensors/landing_sensor"]')
    expect(launched_by).to_have_count(1 + len(inner))
    expect(page.get_by_text("Manually launched")).to_have_count(1)
    _screenshot(page, "runs-launched-by-sensor")
    # the job's page lists its runs; re-executing one warns of no other version
    page.goto(f"{url}/locations/{LOCATION}/jobs/compute_features/runs")
    for run in inner:
        if run["jobName"] == "compute_features":
            expect(page.locator(f'a[href="/runs/{run["runId"]}"]').first).to_be_visible()
    expect(page.get_by_text("No runs found")).to_have_count(0)
    _screenshot(page, "job-runs")


def test_every_collapsed_group_reads_materialized(dagster_dev: str, page: Page) -> None:
    """After the tests above: the update stored every partition through today, so no collapsed
    group counts an asset as never materialized (Dagster counts one with any missing
    partition so)."""
    url = dagster_dev
    groups: dict[str, int] = {}
    for spec in defs.resolve_all_asset_specs():
        groups[str(spec.group_name)] = groups.get(str(spec.group_name), 0) + 1
    page.goto(f"{url}/asset-groups")
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    page.get_by_role("button", name="settings", exact=True).click()
    collapse = page.get_by_role("menuitem", name="Collapse all groups")
    if collapse.count():
        collapse.click()
    else:  # collapsed already
        page.keyboard.press("Escape")
    page.reload()
    nodes = {
        group: page.locator("foreignObject").filter(has=page.locator(f'[data-tooltip="{group}"]'))
        for group in groups
    }
    for group, size in groups.items():
        expect(nodes[group]).not_to_contain_text("fetching statuses", timeout=60_000)
        # its name and one badge, the materialized count: none counting assets never
        # materialized, failed or in progress
        expect(nodes[group]).to_have_text(f"{group}{size}")
    _screenshot(page, "lineage-groups")
    for group, size in groups.items():
        label = f"{size} materialized asset{'s' if size > 1 else ''}"
        tooltip = page.get_by_text(label, exact=True)
        _hover_until_visible(page, nodes[group].get_by_text(str(size), exact=True), tooltip)
        page.mouse.move(0, 0)


def _hover_until_visible(page: Page, target: Locator, tooltip: Locator) -> None:
    """Hovers `target` until `tooltip` shows: a dialog the UI opens late (its newsletter's, which
    the page's handler dismisses) takes the pointer off the first hover."""
    for _ in range(3):
        page.mouse.move(0, 0)
        target.hover()
        try:
            expect(tooltip).to_be_visible(timeout=5_000)
            return
        except AssertionError:
            continue
    expect(tooltip).to_be_visible()
