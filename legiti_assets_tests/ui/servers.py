"""Dagster's webserver (and daemon) for the browser tests, and GraphQL queries to it."""

from __future__ import annotations

import contextlib
import json
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from legiti_assets_tests.cluster.processes import free_port, init_instance, start, stop, wait_until

LOCATIONS_QUERY = "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    """The data of a GraphQL query to the webserver at `url`; fail on its errors."""
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        found = json.load(response)
    assert "errors" not in found, found
    return found["data"]


def locations_loaded(url: str) -> bool:
    entries = graphql(url, LOCATIONS_QUERY)["workspaceOrError"]["locationEntries"]
    return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)


@contextlib.contextmanager
def daemon_and_webserver(env: dict[str, str], workspace: Path, logs: Path) -> Iterator[str]:
    """Dagster's daemon and a webserver over `workspace`, as `make dev` runs them (the
    instance created first); the webserver's URL once its code location has loaded."""
    init_instance(env)
    bin_dir = Path(sys.executable).parent
    daemon = start(
        [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)], env, logs / "d.log"
    )
    port = free_port()
    webserver = [str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port)]
    server = start([*webserver, "-w", str(workspace)], env, logs / "w.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: locations_loaded(url), 180, "dagster-webserver", server, logs / "w.log")
        yield url
    finally:
        stop(server)
        stop(daemon)
