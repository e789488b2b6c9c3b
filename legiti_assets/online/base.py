"""The abstract ``OnlineStore`` every backend implements, and what the backends share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from types import TracebackType
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from legiti_assets.online.values import (
    TIMESTAMP_FIELD,
    Features,
    FeatureSetTable,
    Row,
    from_epoch_seconds,
    to_epoch_seconds,
)

DEFAULT_BATCH_SIZE = 5000
_T = TypeVar("_T")

# What a partition writer yields: per state timestamp (epoch seconds), the states it was
# offered and those it applied.
LOAD_COUNTS = pa.schema(
    [(TIMESTAMP_FIELD, pa.int64()), ("offered", pa.int64()), ("applied", pa.int64())]
)
# Runs where the store's rows are (Spark executors): takes Arrow batches of states, yields
# Arrow batches of LOAD_COUNTS.
PartitionWriter = Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]


def per_timestamp(timestamps: pa.Array) -> Counter[int]:
    """How many states of each timestamp (epoch seconds) a column holds."""
    counted = pc.value_counts(timestamps)
    values, counts = counted.field("values").to_pylist(), counted.field("counts").to_pylist()
    return Counter(dict(zip(values, counts, strict=True)))


def load_counts(offered: Mapping[int, int], applied: Mapping[int, int]) -> pa.RecordBatch:
    stamps = sorted(offered.keys() | applied.keys())
    return pa.RecordBatch.from_arrays(
        [
            pa.array(stamps, pa.int64()),
            pa.array([offered.get(s, 0) for s in stamps], pa.int64()),
            pa.array([applied.get(s, 0) for s in stamps], pa.int64()),
        ],
        schema=LOAD_COUNTS,
    )


@dataclass(frozen=True)
class Loaded:
    """What a load did: per state timestamp offered, how many states it offered and how many
    the store applied (the others were older than what the store kept)."""

    offered: dict[datetime, int]
    applied: dict[datetime, int]

    @classmethod
    def of(cls, counts: Iterable[tuple[int, int, int]]) -> Loaded:
        """From (epoch seconds, offered, applied) triples; a timestamp may repeat."""
        offered, applied = Counter[int](), Counter[int]()
        for seconds, n_offered, n_applied in counts:
            offered[seconds] += n_offered
            applied[seconds] += n_applied
        return cls(
            {from_epoch_seconds(s): n for s, n in sorted(offered.items())},
            {from_epoch_seconds(s): applied[s] for s in sorted(offered)},
        )

    @classmethod
    def of_batches(cls, batches: Iterable[pa.RecordBatch]) -> Loaded:
        return cls.of(
            triple
            for batch in batches
            for triple in zip(
                *(batch.column(c).to_pylist() for c in LOAD_COUNTS.names), strict=True
            )
        )

    @property
    def total_offered(self) -> int:
        return sum(self.offered.values())

    @property
    def total_applied(self) -> int:
        return sum(self.applied.values())


def batches(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def check_request(entity: str, feature_sets: Sequence[FeatureSetTable]) -> None:
    seen: set[str] = set()
    for table in feature_sets:
        if table.entity != entity:
            raise ValueError(
                f"feature set {table.name!r} is of entity {table.entity!r}, not {entity!r}"
            )
        names = {*table.feature_columns, table.timestamp_feature}
        if seen & names:
            raise ValueError(f"feature set {table.name!r} repeats columns {sorted(seen & names)}")
        seen |= names


class OnlineStore(ABC):
    """Latest state per key for each feature set. Safe to share between threads."""

    @abstractmethod
    def write_latest(
        self,
        table: FeatureSetTable,
        rows: Iterable[Row],
        *,
        replace_until: datetime | None = None,
    ) -> int:
        """Upsert ``(key, timestamp, values)`` rows, streaming them in batches.

        ``values`` has one entry per feature column, converted by its type: a COUNT takes an
        integral number, an INT an integral number or None, a FLOAT any real number or None;
        NaN counts as None.

        A row is applied only if no state is stored for its key or the stored timestamp is not
        newer (an equal timestamp overwrites, so re-materializing a day replaces it), or, given
        ``replace_until``, the stored timestamp is not after it: a run that rewrote the days up
        to ``replace_until`` replaces what it knows is gone, even with an older state. The check
        runs atomically inside the store. Each batch is applied all-or-nothing; an invalid row
        raises ValueError and leaves its batch unapplied (earlier batches stay applied).

        Returns the number of rows applied, i.e. offered rows minus those skipped as stale.
        """

    @abstractmethod
    def load(
        self,
        table: FeatureSetTable,
        batches: Iterable[pa.RecordBatch],
        *,
        replace_until: datetime | None = None,
    ) -> Loaded:
        """Upsert states in bulk, by the rule of `write_latest`.

        Each batch holds the columns of `values.arrow_states` (the key, ``timestamp`` in
        integer epoch seconds, the feature columns), checked and converted as `write_latest`
        does its rows, and at most one state per key across all batches (of two states of
        one key, which one the store keeps is not defined). An invalid batch raises ValueError
        before any of it is written; what a failed load leaves applied is the backend's to say
        (loading the same states again is harmless: an equal timestamp overwrites).
        """

    def partition_writer(
        self, table: FeatureSetTable, *, replace_until: datetime | None = None
    ) -> PartitionWriter | None:
        """A picklable function that loads the batches it is given (as `load`) and yields
        their LOAD_COUNTS, for Spark executors to write their own partitions; None when only
        this process can write the store (a local file)."""
        return None

    @abstractmethod
    def get_features(
        self, entity: str, keys: Sequence[str], feature_sets: Sequence[FeatureSetTable]
    ) -> dict[str, Features]:
        """Read the latest state of ``keys``, returned in request order (duplicates collapse).

        Each key maps to every feature column of the requested sets (int, float or None, by
        column type) plus ``<feature set>__timestamp`` (aware UTC datetime, or None when
        nothing is stored, in which case the columns read as ``no_state_values``: 0 for a COUNT,
        None otherwise). Raises ValueError for an unknown entity.
        """

    @abstractmethod
    def keys(
        self,
        table: FeatureSetTable,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[str]:
        """Keys whose stored state is dated in [since, until] (either bound may be open)."""

    @abstractmethod
    def delete(
        self, table: FeatureSetTable, keys: Iterable[str], *, since: datetime, until: datetime
    ) -> int:
        """Remove the states of ``keys`` dated in [since, until] (atomically per key: a state a
        concurrent run wrote outside it stays); returns how many were removed."""

    @abstractmethod
    def latest_timestamp(self, table: FeatureSetTable) -> datetime | None:
        """Newest state timestamp stored in ``table``, or None if it is empty."""

    @abstractmethod
    def count(self, table: FeatureSetTable) -> int:
        """Number of keys with a stored state in ``table``."""

    @abstractmethod
    def mirrored(self, table: FeatureSetTable) -> dict[str, str]:
        """What `record_mirrored` recorded for ``table``: an opaque token per day."""

    @abstractmethod
    def record_mirrored(self, table: FeatureSetTable, tokens: Mapping[str, str]) -> None:
        """Remember which version of each of these days the store now mirrors (kept in the
        store itself, so a store emptied or replaced is known to mirror nothing)."""

    @abstractmethod
    def ping(self) -> None:
        """Raise if the store cannot answer a query."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# Epoch seconds beyond any state's: open bounds of a timestamp range.
_NO_BOUND = 1 << 62


def epoch_bounds(since: datetime | None, until: datetime | None) -> tuple[int, int]:
    return (
        -_NO_BOUND if since is None else to_epoch_seconds(since),
        _NO_BOUND if until is None else to_epoch_seconds(until),
    )
