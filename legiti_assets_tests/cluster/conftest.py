"""The tests of this folder run only with `LEGITI_CLUSTER_TESTS=1` (`make test-cluster`): they
start a standalone Spark cluster (standalone.py) and take minutes, so plain `make test` skips them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from legiti_assets_tests.cluster.standalone import Cluster, standalone_cluster

ENABLED = os.environ.get("LEGITI_CLUSTER_TESTS") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    skip = pytest.mark.skip(
        reason="Spark cluster tests: set LEGITI_CLUSTER_TESTS=1 (make test-cluster)"
    )
    for item in items:
        if not ENABLED and here in item.path.parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with standalone_cluster(tmp_path_factory.mktemp("spark_cluster")) as cluster:
        yield cluster
