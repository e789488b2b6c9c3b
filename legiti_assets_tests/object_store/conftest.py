"""The tests of this folder run only with `LEGITI_OBJECT_STORE_TESTS=1`
(`make test-object-store`): they start an S3-compatible server (moto's) on loopback and run the
platform against it in subprocesses, so plain `make test` skips them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ENABLED = os.environ.get("LEGITI_OBJECT_STORE_TESTS") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    skip = pytest.mark.skip(
        reason="object store tests: set LEGITI_OBJECT_STORE_TESTS=1 (make test-object-store)"
    )
    for item in items:
        if not ENABLED and here in item.path.parents:
            item.add_marker(skip)
