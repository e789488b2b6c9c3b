"""The registry read once: each feature set as the spec the engine computes and the table the
online store keeps, each training set checked against them. Everything downstream reads these;
a declaration the engine cannot compute fails here, naming the feature set and the feature."""

from legiti_assets.engine import INTEGER_TYPES, FeatureSetSpec, feature_set_spec
from legiti_assets.feature_sets import FEATURE_SETS, TRAINING_SETS, TrainingSet
from legiti_assets.online import COUNT, FLOAT, INT, FeatureSetTable

SPECS: dict[str, FeatureSetSpec] = {}
for _entry in FEATURE_SETS:
    if _entry.name in SPECS:
        raise ValueError(f"feature set {_entry.name} is declared twice in FEATURE_SETS")
    SPECS[_entry.name] = feature_set_spec(_entry)


def online_table(spec: FeatureSetSpec) -> FeatureSetTable:
    return FeatureSetTable(
        entity=spec.entity,
        name=spec.name,
        key=spec.key,
        feature_columns=tuple(a.column for a in spec.aggregates),
        feature_types=tuple(
            COUNT if a.count_like else INT if a.dtype in INTEGER_TYPES else FLOAT
            for a in spec.aggregates
        ),
    )


ONLINE_TABLES: dict[str, FeatureSetTable] = {name: online_table(s) for name, s in SPECS.items()}


def online_name(feature_set: str) -> str:
    """The online asset that mirrors a feature set."""
    return f"{feature_set}_online"


# The entities served, each with its key column; a feature column names one thing per entity,
# since the server and the training sets put an entity's features side by side.
ENTITY_KEYS: dict[str, str] = {}
_COLUMNS: dict[tuple[str, str], str] = {}
for _spec in SPECS.values():
    if ENTITY_KEYS.setdefault(_spec.entity, _spec.key) != _spec.key:
        raise ValueError(
            f"feature set {_spec.name}: entity {_spec.entity} is keyed by "
            f"{ENTITY_KEYS[_spec.entity]} elsewhere, not {_spec.key}"
        )
    for _a in _spec.aggregates:
        _owner = _COLUMNS.setdefault((_spec.entity, _a.column), _spec.name)
        if _owner != _spec.name:
            raise ValueError(
                f"feature set {_spec.name}: column {_a.column} is also a column of {_owner}, "
                f"of the same entity {_spec.entity}; rename the feature"
            )


def training_specs(training_set: TrainingSet) -> list[FeatureSetSpec]:
    """The specs of a training set's feature sets; they must be registered and share a key."""
    missing = [n for n in training_set.feature_set_names if n not in SPECS]
    if missing or not training_set.feature_set_names:
        raise ValueError(
            f"training set {training_set.name}: feature sets {missing} are not in FEATURE_SETS"
            if missing
            else f"training set {training_set.name}: lists no feature set"
        )
    specs = [SPECS[n] for n in training_set.feature_set_names]
    if len({s.key for s in specs}) != 1:
        raise ValueError(f"training set {training_set.name}: feature sets have different keys")
    return specs


TRAINING: dict[str, tuple[TrainingSet, list[FeatureSetSpec]]] = {
    t.name: (t, training_specs(t)) for t in TRAINING_SETS
}
