"""Row-level asset checks: each counts the rows that break it, in a pass its step makes anyway:
the landing's validating pass (raw tables), the pass that counts an output's rows per day
(`changes.profile`), or the write itself (`Counted`)."""

import threading
from collections.abc import Mapping

import dagster as dg
from pyspark.sql import Column, DataFrame, Observation
from pyspark.sql import functions as F

# What `Counted.counts` names the number of rows written.
ROWS = "rows"
# How long the counts may take to arrive after the write: Spark delivers them to a listener on
# its own thread.
COUNTS_TIMEOUT_S = 300.0


def specs(asset: str, descriptions: Mapping[str, str]) -> list[dg.AssetCheckSpec]:
    """Blocking checks: a failure keeps downstream assets of the run from materializing."""
    return [
        dg.AssetCheckSpec(name, asset=asset, description=text, blocking=True)
        for name, text in descriptions.items()
    ]


# Above this many hashes shared by two rows, the values themselves are grouped instead.
MAX_SHARED_HASHES = 100_000


def repeated_rows(df: DataFrame, column: str) -> int:
    """How many rows of `df` repeat an earlier row's `column` (nulls equal): every row but one
    of each set of equal values. Exact: rows are grouped by a 64-bit hash of the value first,
    which shuffles less than the values; only values whose hash two rows share are then
    compared."""
    hashed = df.select(F.col(column).alias("_v"), F.xxhash64(column).alias("_h"))
    shared = [
        row["_h"]
        for row in hashed.groupBy("_h")
        .count()
        .where("count > 1")
        .limit(MAX_SHARED_HASHES + 1)
        .select("_h")
        .collect()
    ]
    if not shared:
        return 0
    if len(shared) <= MAX_SHARED_HASHES:
        hashed = hashed.where(F.col("_h").isin(shared))
    total = hashed.groupBy("_v").count().agg(F.sum(F.col("count") - 1)).first()[0]
    return int(total or 0)


def results(
    context: dg.AssetExecutionContext,
    asset: str,
    violations: Mapping[str, int],
) -> list[dg.AssetCheckResult]:
    """Results of the checks of `asset` selected in this run: each passes when it counted no
    violation."""
    key = dg.AssetKey(asset)
    return [
        dg.AssetCheckResult(
            asset_key=key,
            check_name=name,
            passed=count == 0,
            metadata={"violations": count},
        )
        for name, count in violations.items()
        if dg.AssetCheckKey(key, name) in context.selected_asset_check_keys
    ]


class Counted:
    """`df` that counts, while an action (the write) runs over it, its rows (`ROWS`) and the
    rows meeting each of `conditions` (row-level; null reads as false): a Spark observation, so
    the counts take no pass of their own and nothing is cached. Write `df` once, as a whole
    (a range partitioning of it would also run a sampling query over it), then read `counts()`."""

    def __init__(self, df: DataFrame, conditions: Mapping[str, Column]) -> None:
        self._observation = Observation()
        self.df = df.observe(
            self._observation,
            F.count(F.lit(1)).alias(ROWS),
            *[F.count_if(condition).alias(name) for name, condition in conditions.items()],
        )

    def counts(self) -> dict[str, int]:
        """The counts of the first action over `df`; raises if none arrives in time (no action
        ran, or Spark left the observation out of it) rather than waiting forever."""
        found: dict[str, dict[str, int]] = {}

        def wait() -> None:
            found["counts"] = self._observation.get

        # Observation.get waits without a timeout; a daemon thread never holds up the exit
        waiter = threading.Thread(target=wait, name="observed-counts", daemon=True)
        waiter.start()
        waiter.join(COUNTS_TIMEOUT_S)
        # the write is committed by then: a step that fails here reports no check result, and
        # the thread stays blocked; Spark's listener bus drops events only when its queue is full
        if "counts" not in found:
            raise RuntimeError(
                f"Spark reported no counts {COUNTS_TIMEOUT_S:.0f} s after writing the rows: "
                "was the DataFrame written?"
            )
        return {name: int(value or 0) for name, value in found["counts"].items()}
