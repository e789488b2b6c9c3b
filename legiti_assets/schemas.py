"""Column schemas derived from the declarations, and the check that stored days still match."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
from deltalake import DeltaTable

from legiti_assets.engine import TIMESTAMP, FeatureSetSpec
from legiti_assets.locations import delta_path

# Each declared (Spark) column type as Delta's log names it.
_DELTA_TYPES = {
    "string": "string",
    "timestamp": "timestamp",
    "int": "integer",
    "bigint": "long",
    "float": "float",
    "double": "double",
}


class StoredSchemaError(ValueError):
    """Stored days were written under another declaration."""


def state_schema(spec: FeatureSetSpec) -> dg.TableSchema:
    """A feature set's rows: key, the day the state holds from, one column per aggregate."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(spec.key, "string", description=spec.key_description),
            dg.TableColumn(
                TIMESTAMP, "timestamp", description="Day (00:00 UTC) from which this state holds."
            ),
            *[
                dg.TableColumn(a.column, a.dtype, description=a.description)
                for a in spec.aggregates
            ],
        ]
    )


def spark_ddl(schema: dg.TableSchema) -> str:
    return ", ".join(f"`{c.name}` {c.type}" for c in schema.columns)


def check_stored_schema(
    table: str, path: Path, schema: dg.TableSchema, as_of: int | None = None
) -> None:
    """Raise, saying to backfill, if the columns of the Delta table at `path` (as of version
    `as_of`) differ from `schema`'s. Reads the log's schema, not the data."""
    expected = {c.name: _DELTA_TYPES.get(c.type) for c in schema.columns}
    stored = DeltaTable(delta_path(path), version=as_of).schema().fields
    types = {f.name: _type_name(f.type) for f in stored}
    # a declared type with no name here is checked by column name only
    if types.keys() != expected.keys() or any(
        t is not None and types[n] != t for n, t in expected.items()
    ):
        raise StoredSchemaError(
            f"{table}: the rows stored in {path} have columns "
            f"{', '.join(f'{n} {t}' for n, t in types.items())}, not the declared "
            f"{[c.name for c in schema.columns]}; the declaration changed since it was "
            f"written: backfill {table} over every stored day (Materialize all in the UI, "
            "or dagster asset materialize --partition-range)"
        )


def _type_name(delta_type: object) -> str:
    return str(getattr(delta_type, "type", delta_type))


def check_versions(
    table: str, versions: dict[dt.date, str | None], days: Sequence[dt.date], expected: str
) -> None:
    """Raise, saying to backfill, if some of `days` were written under another declaration
    version (a changed filter, query or function keeps the columns but not the values)."""
    stale = [d for d in days if versions.get(d) not in (None, expected)]
    if stale:
        raise StoredSchemaError(
            f"{table}: {len(stale)} stored day(s), {stale[0]} to {stale[-1]}, were computed "
            f"under another declaration (version {versions[stale[0]]}, now {expected}); "
            f"backfill {table} over every stored day (Materialize all in the UI, or dagster "
            "asset materialize --partition-range)"
        )
