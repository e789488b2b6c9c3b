"""The Dagster UI on a materialized sample, driven by Debian's Chromium through Playwright.

The tests of this folder run only with `LEGITI_UI_TESTS=1` (`make test-ui`): they need
`/usr/bin/chromium` (`apt-get install chromium`; `$LEGITI_CHROMIUM` overrides the path) and
take minutes, so plain `make test` skips them.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Error, Page, sync_playwright

from legiti_assets_tests.cluster.processes import (
    free_port,
    materialize_sample,
    sample_env,
    start,
    stop,
    wait_until,
)
from legiti_assets_tests.ui.servers import locations_loaded

ENABLED = os.environ.get("LEGITI_UI_TESTS") == "1"
CHROMIUM = os.environ.get("LEGITI_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason="browser tests: set LEGITI_UI_TESTS=1 (make test-ui)")
    for item in items:
        if not ENABLED and here in item.path.parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def webserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a dagster-webserver over the sample, materialized by the main job."""
    tmp = tmp_path_factory.mktemp("ui")
    env = sample_env(tmp)
    materialize_sample(env, tmp / "materialize.log")
    port, log = free_port(), tmp / "webserver.log"
    cmd = [str(Path(sys.executable).parent / "dagster-webserver"), "-h", "127.0.0.1"]
    cmd += ["-p", str(port), "-w", "workspace.yaml"]
    server = start(cmd, env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: locations_loaded(url), 180, "dagster-webserver", server, log)
        yield url
    finally:
        stop(server)


@pytest.fixture(scope="session")
def page(webserver: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    """One Chromium page (fresh profile) for the session; the first visit dismisses the UI's
    newsletter dialog."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium_profile")),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1600, "height": 1000},
        )
        try:
            page = context.new_page()
            page.set_default_timeout(60_000)
            page.goto(webserver)
            skip = page.get_by_role("button", name="Skip")
            with contextlib.suppress(Error):  # not shown when this instance saw it before
                skip.click(timeout=15_000)
            page.add_locator_handler(skip, lambda button: button.click())
            yield page
        finally:
            context.close()
