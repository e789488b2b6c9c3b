"""The top: the assets, checks, resources and asset jobs as the executor binds them
(`executor.bound`), with the update and vacuum jobs, the sensor and the schedules. Nothing in
`legiti_assets` imports it (`test_definitions.py` holds us to that)."""

import dagster as dg

from legiti_assets.automation import daily_schedule, landing_sensor
from legiti_assets.executor import bound, build_resources
from legiti_assets.resources import DataDir, SparkResource
from legiti_assets.settings import Settings
from legiti_assets.update import update_job
from legiti_assets.vacuum import vacuum_job, vacuum_schedule


def definitions(resources: dict[str, object], settings: Settings | None = None) -> dg.Definitions:
    """Everything, bound to `resources` (the defaults below, or temp dirs in the tests and
    benchmarks) and shaped by `settings`."""
    settings = settings or Settings()
    return dg.Definitions.merge(
        # the assets, checks and asset jobs, as the executor runs them
        bound(resources),
        dg.Definitions(
            jobs=[update_job, vacuum_job],
            schedules=[daily_schedule, vacuum_schedule],
            sensors=[landing_sensor(settings.sensor_interval_seconds)],
        ),
    )


defs = definitions(build_resources(DataDir(), SparkResource()), Settings.from_env())
