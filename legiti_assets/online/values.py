"""Feature column types, and how written values are checked and converted to them: what every
backend stores and reads back."""

from __future__ import annotations

import functools
import math
import numbers
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NoReturn

import pyarrow as pa
import pyarrow.compute as pc

TIMESTAMP_FIELD = "timestamp"

# Feature column types.
COUNT = "count"
INT = "int"
FLOAT = "float"
FEATURE_TYPES = (COUNT, INT, FLOAT)

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")

FeatureValue = int | float | None
# Values may also be numpy or Decimal numbers; ``prepare`` converts them.
Row = tuple[str, datetime, Sequence[Any]]
Features = dict[str, Any]


def _check_identifier(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise ValueError(f"invalid {kind} {value!r}: must match {_IDENTIFIER.pattern}")
    return value


@dataclass(frozen=True)
class FeatureSetTable:
    """Where a feature set lives in the online store and which typed columns it has.

    ``feature_types`` holds one of COUNT, INT, FLOAT per feature column; left empty, every column
    is a COUNT. It is normalised to the full tuple, so both spellings are equal (and hash alike).
    """

    name: str
    key: str
    feature_columns: tuple[str, ...]
    feature_types: tuple[str, ...] = ()
    entity: str = "user"

    def __post_init__(self) -> None:
        # Names end up in SQL and Redis keys, so they are validated once, here.
        _check_identifier("feature set name", self.name)
        _check_identifier("key column", self.key)
        columns = tuple(self.feature_columns)
        object.__setattr__(self, "feature_columns", columns)
        if not columns:
            raise ValueError(f"feature set {self.name!r} has no feature columns")
        # A lone string would otherwise be split into characters.
        if isinstance(self.feature_types, str):
            raise ValueError(f"feature set {self.name!r}: feature_types must be a sequence")
        types = tuple(self.feature_types) or (COUNT,) * len(columns)
        object.__setattr__(self, "feature_types", types)
        if len(types) != len(columns) or not set(types) <= set(FEATURE_TYPES):
            raise ValueError(
                f"feature set {self.name!r}: feature_types must give one of {FEATURE_TYPES} "
                f"for each of {columns}, got {types}"
            )
        for column in columns:
            _check_identifier("feature column", column)
        reserved = {self.key, TIMESTAMP_FIELD}
        if len(set(columns)) != len(columns) or reserved & set(columns):
            raise ValueError(
                f"feature set {self.name!r}: columns must be unique and must not be "
                f"{sorted(reserved)}: {columns}"
            )

    @property
    def timestamp_feature(self) -> str:
        """Name under which ``get_features`` reports this feature set's state timestamp."""
        return f"{self.name}__{TIMESTAMP_FIELD}"

    @property
    def no_state_values(self) -> tuple[int | None, ...]:
        """What each column reads as for a key without stored state: 0 for a COUNT (no events
        in any window), None otherwise (an empty window has no sum, min, max or average)."""
        return tuple(0 if t == COUNT else None for t in self.feature_types)


def to_epoch_seconds(ts: datetime) -> int:
    if not isinstance(ts, datetime):
        raise ValueError(f"timestamp must be a datetime, got {type(ts).__name__}: {ts!r}")
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return math.floor(ts.timestamp())


def from_epoch_seconds(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


# Built once: a mirror checks every value of millions of states, and an isinstance check
# against ABCs (with a union built per call) costs several times an exact-type test; plain ints
# and floats, almost every value, are told apart by their exact type first (10m online stage:
# user_orders_online 64.6 -> 60.7 s).
_NUMBERS = (numbers.Number, Decimal)
_REALS = (numbers.Real, Decimal)


def _is_null(value: Any) -> bool:
    # NaN != NaN; Spark hands over NaN doubles and pandas turns nulls into NaN.
    kind = type(value)
    if kind is int:
        return False
    if kind is float:
        return value != value
    return value is None or (isinstance(value, _NUMBERS) and value != value)


def _check_number(value: Any) -> None:
    # numbers.Real covers Python and numpy ints and floats; Decimal is what Spark collects for
    # decimal columns. Strings are rejected rather than parsed, and bools (np.bool_ is no Real)
    # because a bool in a numeric column means the wrong column was selected.
    kind = type(value)
    if kind is int or kind is float:
        return
    if isinstance(value, bool) or not isinstance(value, _REALS):
        raise ValueError(f"expected a number, got {type(value).__name__}: {value!r}")


def _as_int(value: Any) -> int:
    # Accepts integral floats (a pandas column with nulls turns float); rejects 2.5 and inf
    # instead of silently truncating them.
    _check_number(value)
    number = int(value)
    if number != value:
        raise ValueError(f"{value!r} is not an integer")
    return number


def _as_count(value: Any) -> int:
    if _is_null(value):
        raise ValueError("a count cannot be null")
    return _as_int(value)


def _as_nullable_int(value: Any) -> int | None:
    return None if _is_null(value) else _as_int(value)


def _as_nullable_float(value: Any) -> float | None:
    if _is_null(value):
        return None
    _check_number(value)
    number = float(value)
    if math.isinf(number):
        # JSON cannot carry it, so the server could not serve it: fail where it was computed.
        raise ValueError(f"{value!r} is not finite")
    # SQLite stores integral REALs as integers and reads -0.0 back as 0.0; normalise it here so
    # both backends agree.
    return number + 0.0


_CONVERTERS: dict[str, Callable[[Any], FeatureValue]] = {
    COUNT: _as_count,
    INT: _as_nullable_int,
    FLOAT: _as_nullable_float,
}


def prepare(
    table: FeatureSetTable, batch: list[Row]
) -> list[tuple[str, int, tuple[FeatureValue, ...]]]:
    """Validate a whole batch before touching the store, so a bad row rejects its entire batch."""
    columns = [
        (c, _CONVERTERS[t]) for c, t in zip(table.feature_columns, table.feature_types, strict=True)
    ]
    prepared = []
    for row in batch:
        try:
            key, ts, raw = row
            if not isinstance(key, str):
                # An int cpf would already have lost its leading zeros.
                raise ValueError(f"key must be a str, got {type(key).__name__}")
            raw = tuple(raw)
            if len(raw) != len(columns):
                raise ValueError(f"expected {len(columns)} values {table.feature_columns}")
            values = []
            for (column, convert), value in zip(columns, raw, strict=True):
                try:
                    values.append(convert(value))
                except (TypeError, ValueError, OverflowError) as exc:
                    raise ValueError(f"{column}: {exc}") from exc
            prepared.append((key, to_epoch_seconds(ts), tuple(values)))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid row for {table.name}: {row!r}: {exc}") from exc
    return prepared


def _refuse(row: int, table: FeatureSetTable, keys: pa.Array, column: str, reason: str) -> NoReturn:
    raise ValueError(f"invalid row for {table.name}: key {keys[row].as_py()!r}: {column}: {reason}")


def _check(
    table: FeatureSetTable, keys: pa.Array, column: str, bad: pa.Array, reason: Callable[[int], str]
) -> None:
    """Raise for the first row that `bad` flags (a null flag is no flag)."""
    row = pc.index(pc.fill_null(bad, False), True).as_py()
    if row >= 0:
        _refuse(row, table, keys, column, reason(row))


def _arrow_feature(
    table: FeatureSetTable, keys: pa.Array, column: str, kind: str, values: pa.Array
) -> pa.Array:
    """One feature column as ``prepare`` converts its values: int64 for a COUNT or an INT,
    float64 for a FLOAT, nulls kept."""
    # Spark's own column types take a vectorized path: they are what a load carries, millions
    # of values. Any other type (decimals, ints in a FLOAT column, floats in an INT one) goes
    # value by value through the same converters as `prepare`, so both paths accept and refuse
    # alike.
    if kind in (COUNT, INT) and pa.types.is_integer(values.type) and values.type != pa.uint64():
        if kind == COUNT:
            _check(table, keys, column, pc.is_null(values), lambda _: "a count cannot be null")
        return values.cast(pa.int64())
    if kind == FLOAT and pa.types.is_floating(values.type):
        values = values.cast(pa.float64())
        # JSON cannot carry it, so the server could not serve it
        infinite = pc.is_inf(values)
        _check(table, keys, column, infinite, lambda r: f"{values[r].as_py()!r} is not finite")
        # NaN is null; adding 0.0 turns -0.0 into 0.0, as `_as_nullable_float` does
        nan = pc.fill_null(pc.is_nan(values), False)
        return pc.add(pc.if_else(nan, pa.scalar(None, pa.float64()), values), 0.0)
    convert = _CONVERTERS[kind]
    converted = []
    for row, value in enumerate(values.to_pylist()):
        try:
            converted.append(convert(value))
        except (TypeError, ValueError, OverflowError) as exc:
            _refuse(row, table, keys, column, str(exc))
    return pa.array(converted, pa.float64() if kind == FLOAT else pa.int64())


def arrow_states(table: FeatureSetTable, batch: pa.RecordBatch) -> pa.RecordBatch:
    """A batch of states checked and converted as ``prepare`` does a list of rows.

    ``batch`` has the columns ``table.key`` (strings), ``timestamp`` (integer epoch seconds)
    and every feature column, found by name. The result has exactly these columns, in this
    order: the key as strings, the timestamp as int64, each feature as int64 (COUNT, INT) or
    float64 (FLOAT), NaN as null and -0.0 as 0.0. Raises ValueError naming the first bad row.
    """
    names = [table.key, TIMESTAMP_FIELD, *table.feature_columns]
    missing = [n for n in names if n not in batch.schema.names]
    if missing:
        raise ValueError(f"states for {table.name} lack columns {missing}: {batch.schema.names}")
    keys = batch.column(table.key)
    if not (pa.types.is_string(keys.type) or pa.types.is_large_string(keys.type)):
        # An int cpf would already have lost its leading zeros.
        raise ValueError(f"{table.name}: the key {table.key} must be strings, not {keys.type}")
    if keys.null_count:
        raise ValueError(f"invalid states for {table.name}: a null {table.key}")
    timestamps = batch.column(TIMESTAMP_FIELD)
    if not pa.types.is_integer(timestamps.type) or timestamps.type == pa.uint64():
        raise ValueError(
            f"{table.name}: {TIMESTAMP_FIELD} must be integer epoch seconds, not {timestamps.type}"
        )
    _check(table, keys, TIMESTAMP_FIELD, pc.is_null(timestamps), lambda _: "a null timestamp")
    features = [
        _arrow_feature(table, keys, column, kind, batch.column(column))
        for column, kind in zip(table.feature_columns, table.feature_types, strict=True)
    ]
    return pa.RecordBatch.from_arrays(
        [keys.cast(pa.string()), timestamps.cast(pa.int64()), *features], names=names
    )


@functools.cache
def no_state(table: FeatureSetTable) -> Features:
    """What a key without stored state reads as (``no_state_values``), with no timestamp.

    Shared and cached: callers copy it (``dict.update``), never mutate it.
    """
    return {
        **dict(zip(table.feature_columns, table.no_state_values, strict=True)),
        table.timestamp_feature: None,
    }


def empty_features(feature_sets: Sequence[FeatureSetTable]) -> Features:
    features: Features = {}
    for table in feature_sets:
        features.update(no_state(table))
    return features
