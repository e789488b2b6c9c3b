"""What butterfree 1.8 keeps private but the engine must know to refuse what it cannot compute.

`AggregatedFeatureSet` has no public accessor for its pivot, its `with_distinct` subset or its
windows' slide; they are read here and nowhere else, for the butterfree versions verified.
`legiti_assets_tests/test_engine.py` proves these reads against the public setters.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version

from butterfree.transform.aggregated_feature_set import AggregatedFeatureSet

VERIFIED = ("1.8.",)
_version = version("butterfree")
if not _version.startswith(VERIFIED):
    raise ImportError(
        f"legiti_assets.butterfree_compat reads private attributes verified with butterfree "
        f"{', '.join(v + 'x' for v in VERIFIED)}, not {_version}: check them in "
        "butterfree/transform/aggregated_feature_set.py, then extend VERIFIED"
    )


@dataclass(frozen=True)
class Internals:
    pivot_column: str | None
    distinct_subset: tuple[str, ...]
    slides: tuple[str, ...]


def internals(feature_set: AggregatedFeatureSet) -> Internals:
    return Internals(
        pivot_column=feature_set._pivot_column,
        distinct_subset=tuple(feature_set._distinct_subset or ()),
        slides=tuple(window.slide for window in feature_set._windows),
    )
