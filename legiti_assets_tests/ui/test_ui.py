"""What a person sees in the Dagster UI after `make awesome-dataset`, in a real Chromium.

Needs `LEGITI_UI_TESTS=1` (`make test-ui`); each test saves a screenshot to docs/screenshots/.
"""

from __future__ import annotations

import datetime as dt
import re

import dagster as dg
import pytest
from playwright.sync_api import Locator, Page, expect

from legiti_assets.definitions import defs
from legiti_assets_tests.cluster.processes import REPO, SAMPLE_END, SAMPLE_START
from legiti_assets_tests.sample import AWESOME_DATASET

pytestmark = pytest.mark.timeout(1800)  # the first test also waits for the sample's run

SCREENSHOTS = REPO / "docs" / "screenshots"
GROUPS = {
    "raw": ["order_events", "chargeback_events"],
    "feature_store": ["user_orders", "user_chargebacks"],
    "datasets": ["awesome_dataset"],
}
SPECS = {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}
CHECKS = sorted(
    (key.asset_key.to_user_string(), key.name)
    for key in defs.resolve_asset_graph().asset_check_keys
)


def _checks_of(asset: str) -> list[str]:
    return [name for owner, name in CHECKS if owner == asset]


def _screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def _box(locator: Locator) -> tuple[float, float, float, float]:
    expect(locator).to_have_count(1)
    box = locator.bounding_box()
    assert box is not None, locator
    return box["x"], box["y"], box["x"] + box["width"], box["y"] + box["height"]


def test_asset_graph_shows_every_asset_in_its_group(page: Page, webserver: str) -> None:
    page.goto(f"{webserver}/asset-groups")
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    page.get_by_role("button", name="settings", exact=True).click()
    page.get_by_role("menuitem", name="Expand all groups").click()
    page.reload()  # fits the expanded graph to the window
    for group, assets in GROUPS.items():
        header = page.locator("foreignObject.group").filter(
            has=page.locator(f'[data-tooltip="{group}"]')
        )
        left, top, right, bottom = _box(header)
        for asset in assets:
            node = page.locator("foreignObject").filter(
                has=page.locator(f'[data-tooltip="{asset}"]')
            )
            x0, y0, x1, y1 = _box(node)
            assert left <= x0 and x1 <= right and top <= y0 and y1 <= bottom, (asset, group)
            checks = len(_checks_of(asset))
            # the first node's live data arrives with the webserver's first queries: seconds on a
            # busy machine
            expect(node).to_contain_text(re.compile(rf"{checks} / {checks} Passed"), timeout=30_000)
    # for the picture: hide the group tree and zoom out once so the whole graph fits
    page.get_by_role("button", name="panel_show_right", exact=True).click()
    page.get_by_role("button", name="zoom_out", exact=True).click()
    page.wait_for_timeout(1_000)  # the zoom animates
    _screenshot(page, "asset-graph")


def test_asset_page_shows_description_and_column_schema(page: Page, webserver: str) -> None:
    spec = SPECS["user_orders"]
    page.goto(f"{webserver}/assets/user_orders")
    assert spec.description
    expect(page.get_by_text(spec.description)).to_be_visible()
    columns = page.get_by_role("table").filter(has_text="Column name")
    schema: dg.TableSchema = spec.metadata["dagster/column_schema"]
    for column in schema.columns:
        row = columns.get_by_role("row").filter(has=page.get_by_text(column.name, exact=True))
        assert column.description
        expect(row).to_contain_text(column.description)
    expect(page.get_by_text(spec.group_name or "", exact=True)).to_be_visible()
    _screenshot(page, "asset-user_orders")


def test_partitions_view_shows_the_materialized_days(page: Page, webserver: str) -> None:
    days = (dt.date.fromisoformat(SAMPLE_END) - dt.date.fromisoformat(SAMPLE_START)).days + 1
    # the partitions start at the sample's first day (LEGITI_FIRST_DAY's default) and end today
    today = dt.datetime.now(dt.UTC).date()
    partitions = (today - dt.date.fromisoformat(SAMPLE_START)).days + 1
    page.goto(f"{webserver}/assets/user_orders?view=partitions")
    expect(page.get_by_text(f"Materialized ({days})")).to_be_visible()
    expect(page.get_by_text(f"Missing ({partitions - days})")).to_be_visible()
    expect(page.get_by_text(f"{partitions:,} Partitions Selected")).to_be_visible()
    page.get_by_text(re.compile(r"^Missing \(\d+\)$")).click()  # list the materialized only
    expect(page.get_by_text(f"{days} Partitions Selected")).to_be_visible()
    page.get_by_placeholder("Filter by name").fill("2020-05-1")
    page.get_by_text("2020-05-13", exact=True).first.click()
    expect(page).to_have_url(re.compile(r"partition=2020-05-13"))
    expect(page.get_by_text("Materialized", exact=True)).to_be_visible()
    expect(page.get_by_text("Latest materialization")).to_be_visible()
    _screenshot(page, "partitions")


def test_checks_tab_shows_every_check_passed(page: Page, webserver: str) -> None:
    names = _checks_of("user_orders")
    page.goto(f"{webserver}/assets/user_orders?view=checks")
    expect(page.get_by_text(f"Checks ({len(names)})")).to_be_visible()
    for name in names:
        expect(page.get_by_text(name, exact=True).first).to_be_visible()
    expect(page.get_by_text("Succeeded", exact=True)).to_have_count(len(names))
    expect(page.get_by_text("Failed", exact=True)).to_have_count(0)
    expect(page.get_by_text("Passed", exact=True)).to_be_visible()  # the selected check's result
    _screenshot(page, "checks")


def test_training_set_materialization_previews_its_rows(page: Page, webserver: str) -> None:
    page.goto(f"{webserver}/assets/awesome_dataset?view=events")
    entry = page.locator("tr").filter(has=page.get_by_text("preview", exact=True)).first
    table = entry.locator("table")
    expect(table).to_be_visible()
    # the sample's nine orders, by time, with their feature states
    rows = table.locator("tbody tr")
    expect(rows).to_have_count(len(AWESOME_DATASET))
    expect(rows.first).to_contain_text("2018-05-12 00:00:01")
    for i, row in enumerate(sorted(AWESOME_DATASET, key=lambda r: (r[1], r[0]))):
        cells = rows.nth(i).locator("td")
        expect(cells.first).to_have_text(row[0])
        expect(cells.nth(4)).to_have_text(str(row[4]))  # its 3-day order count
    expect(table).to_contain_text("cpf_orders__count_over_30_days_rolling_windows")
    _screenshot(page, "preview-awesome_dataset")
    # the column types
    entry.get_by_text("Show schema").click()
    schema = page.get_by_role("dialog").filter(has_text="Schema for preview")
    expect(schema.get_by_role("row").filter(has_text="chargeback_timestamp")).to_contain_text(
        "timestamp"
    )
    expect(schema.get_by_role("row").filter(has_text="cpf_orders__count_over_3_")).to_contain_text(
        "int"
    )
    schema.get_by_role("button", name="Close").click()
