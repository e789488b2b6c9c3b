"""Training sets: each spine row enriched with point-in-time correct feature values."""

import datetime as dt

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from legiti_assets import checks, layout, storage
from legiti_assets.assets.raw import EVENT_SCHEMA
from legiti_assets.catalog import TRAINING
from legiti_assets.concurrency import WRITER_POOL
from legiti_assets.engine import TIMESTAMP, FeatureSetSpec
from legiti_assets.feature_sets import TrainingSet
from legiti_assets.io_managers import INPUT_TABLES, PREVIEW_ORDER, TABLE, pin
from legiti_assets.pit_join import asof_column, covered_until, point_in_time_join
from legiti_assets.resources import DataDir
from legiti_assets.schemas import state_schema

DATASET_CHECKS = {
    "one_row_per_order": "No spine row (order_id) appears twice.",
    "point_in_time": "No feature value comes from a state dated after its spine row.",
}
# The raw events' columns, which every spine is made of.
_EVENT_COLUMNS = {c.name: c for c in EVENT_SCHEMA.columns}


def training_set_schema(training_set: TrainingSet, specs: list[FeatureSetSpec]) -> dg.TableSchema:
    """The spine's columns, its time as `timestamp` followed by the label, then the features."""
    time, label = _EVENT_COLUMNS[training_set.timestamp], _EVENT_COLUMNS[training_set.label]
    spine = []
    for column in EVENT_SCHEMA.columns:
        if column.name == time.name:
            spine.append(dg.TableColumn(TIMESTAMP, time.type, description=time.description))
            spine.append(
                dg.TableColumn(
                    label.name,
                    label.type,
                    description=f"The label. {label.description}",
                )
            )
        elif column.name != label.name:
            spine.append(column)
    features = [c for spec in specs for c in state_schema(spec).columns[2:]]
    return dg.TableSchema(columns=[*spine, *features])


def training_set_inputs(training_set: TrainingSet, specs: list[FeatureSetSpec]) -> list[str]:
    """The tables a training set is computed from: its spine's and its feature sets'."""
    return [
        layout.raw_table(training_set.spine),
        *(layout.feature_set_table(s.entity, s.name) for s in specs),
    ]


def training_set_asset(
    training_set: TrainingSet, specs: list[FeatureSetSpec]
) -> dg.AssetsDefinition:
    """An unpartitioned asset: the spine on days every feature set covers, joined point in time."""
    name, spine_name, time = training_set.name, training_set.spine, training_set.timestamp
    schema = training_set_schema(training_set, specs)

    @dg.asset(
        pool=WRITER_POOL,
        name=name,
        description=training_set.description,
        group_name="datasets",
        kinds={"spark", "deltalake"},
        ins={
            "spine": dg.AssetIn(spine_name),
            **{f"states_{i}": dg.AssetIn(s.name) for i, s in enumerate(specs)},
        },
        io_manager_key="delta_io_manager",
        metadata={
            TABLE: layout.dataset_table(name),
            PREVIEW_ORDER: f"{TIMESTAMP},order_id",
            INPUT_TABLES: ",".join(training_set_inputs(training_set, specs)),
            "spine": spine_name,
            "feature_sets": ", ".join(s.name for s in specs),
            "dagster/column_schema": schema,
        },
        check_specs=[
            *checks.specs(name, DATASET_CHECKS),
            dg.AssetCheckSpec(
                "row_count_equals_orders",
                asset=name,
                description="As many rows as spine rows on days every feature set covers.",
                blocking=True,
            ),
        ],
    )
    def _training_set(
        context: dg.AssetExecutionContext, data_dir: DataDir, spine: DataFrame, **states: DataFrame
    ):
        # the days covered in the versions of the tables this run reads
        root = data_dir.root
        versions = {
            t: pin(context.run_id, t)
            for s in specs
            for t in (
                root / layout.feature_set_table(s.entity, s.name),
                root / layout.raw_table(s.source),
            )
        }
        covered = covered_until(root, specs, versions)
        on_covered_day = F.to_date(time) <= F.lit(covered)
        n_all, n_rows = spine.agg(F.count(F.lit(1)), F.count_if(on_covered_day)).first()
        joined = point_in_time_join(
            spine.where(on_covered_day),
            [(s, states[f"states_{i}"]) for i, s in enumerate(specs)],
            timestamp=time,
        )
        late = F.lit(False)
        for s in specs:
            late = late | (F.col(asof_column(s.name)) > F.col(time))
        # counted while the rows are written: no pass of their own, nothing cached
        written = checks.Counted(joined, {"point_in_time": late})
        yield dg.Output(
            written.df.withColumnRenamed(time, TIMESTAMP).select(*[c.name for c in schema.columns]),
            metadata={
                "rows": n_rows,
                "rows_on_uncovered_days": n_all - n_rows,
                "last_covered_day": str(covered) if covered < dt.date.max else "all",
            },
        )
        found = written.counts()
        # the order_ids as stored: each row beyond them repeats an order, whether the spine
        # (an order moved between days, one of them not ingested again) or the join made it
        stored = storage.read(spine.sparkSession, data_dir.resolve(layout.dataset_table(name)))
        yield from checks.results(
            context,
            name,
            {
                "one_row_per_order": checks.repeated_rows(stored, "order_id"),
                "point_in_time": found["point_in_time"],
                "row_count_equals_orders": abs(found[checks.ROWS] - n_rows),
            },
        )

    return _training_set


TRAINING_SET_ASSETS = [training_set_asset(t, specs) for t, specs in TRAINING.values()]
