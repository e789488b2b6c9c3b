"""Who may write the store at once: one run. Every run of an asset that writes a table, and the
update's run, is in the pool `WRITER_POOL`; deploy/dagster.yaml gives it one slot per run
(`concurrency: pools: granularity: run`), so the run queue starts a UI backfill, an asset job,
the sensor's update or the daily run only once the writer before it has finished. The runs an
update executes inside its own are in the same process, under its slot."""

WRITER_POOL = "legiti_writes"
