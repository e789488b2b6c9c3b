"""Runs that a process executes itself (the update's runs, `make awesome-dataset`'s,
`make update`'s), attributed the way Dagster attributes the runs its daemon launches: to the code
location, so their job's page lists them and re-executing one finds its job at the version it
ran, and to what launched them, so the Runs page's "Launched by" names the sensor or schedule.

`JobDefinition.execute_in_process` records a run with no origin: the UI shows it as "Manually
launched", in no code location, on no job page. Nothing public creates a run with an origin and
executes it in this process (a run launcher would start another process and a Spark session for
each step), so this module does, with Dagster's internals: it is the only module that touches
them for this, and it refuses a Dagster version it was not verified with.
"""

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import dagster as dg

# The versions whose run creation and in-process execution this module was read against.
VERIFIED_DAGSTER_VERSIONS = ("1.13.27",)
if dg.__version__ not in VERIFIED_DAGSTER_VERSIONS:
    raise ImportError(
        f"legiti_assets.attribution was verified with Dagster "
        f"{', '.join(VERIFIED_DAGSTER_VERSIONS)}, not {dg.__version__}: it creates and executes "
        "runs through Dagster internals. Check JobDefinition.execute_in_process and "
        "DagsterInstance.create_run_for_job of the new version before adding it."
    )

from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.execution.api import execute_run
from dagster._core.execution.execute_in_process import merge_run_tags
from dagster._core.execution.execution_result import ExecutionResult
from dagster._core.origin import JobPythonOrigin
from dagster._core.remote_origin import (
    ManagedGrpcPythonEnvCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.storage.tags import SCHEDULE_NAME_TAG, SENSOR_NAME_TAG, USER_TAG
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

# The code location workspace.yaml declares: a `python_module` entry is named after its module,
# and a `dg.Definitions` is its one repository.
LOCATION = "legiti_assets.definitions"
REPOSITORY = "__repository__"
# What launched a run, which the runs it executes inherit.
LAUNCHED_BY_TAGS = (SENSOR_NAME_TAG, SCHEDULE_NAME_TAG, USER_TAG)
# The run whose process executed this one (the update's), for the UI's tag filter.
LAUNCHED_IN_TAG = "legiti/launched_in_run"


def remote_origin(job_name: str, parent: dg.DagsterRun | None = None) -> RemoteJobOrigin:
    """The job's origin: the parent run's code location, or (a command-line process) the
    workspace's, as `make dev` loads it."""
    if parent is not None and parent.remote_job_origin is not None:
        return parent.remote_job_origin.repository_origin.get_job_origin(job_name)
    # workspace.yaml's working directory, `.`: the repository
    root = str(Path(__file__).resolve().parents[1])
    target = LoadableTargetOrigin(
        executable_path=sys.executable, module_name=LOCATION, working_directory=root
    )
    location = ManagedGrpcPythonEnvCodeLocationOrigin(target, LOCATION)
    return RemoteRepositoryOrigin(location, REPOSITORY).get_job_origin(job_name)


def inherited_tags(parent: dg.DagsterRun | None) -> dict[str, str]:
    """The parent run's tags naming what launched it, and the parent itself."""
    if parent is None:
        return {}
    return {
        **{tag: parent.tags[tag] for tag in LAUNCHED_BY_TAGS if tag in parent.tags},
        LAUNCHED_IN_TAG: parent.run_id,
    }


def execute(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    *,
    asset_selection: Sequence[dg.AssetKey] | None = None,
    partition_key: str | None = None,
    tags: Mapping[str, str] | None = None,
    run_config: Mapping[str, object] | None = None,
    parent: dg.DagsterRun | None = None,
) -> ExecutionResult:
    """What `job.execute_in_process` does, recorded with the job's origin and the tags of
    what launched `parent`; never raises for a failed run. `job` carries its resources and the
    in-process executor (`executor.bound`'s jobs do)."""
    if job.executor_def.name != dg.in_process_executor.name:
        raise ValueError(f"job {job.name}: executed here, it needs the in-process executor")
    run_config = run_config or {}
    run_tags = merge_run_tags(
        job_def=job,
        partition_key=partition_key,
        tags={**(tags or {}), **inherited_tags(parent)},
        asset_selection=asset_selection,
        instance=instance,
        run_config=run_config,
    )
    code_origin = (
        JobPythonOrigin(job.name, parent.job_code_origin.repository_origin)
        if parent is not None and parent.job_code_origin is not None
        else None
    )
    run = instance.create_run_for_job(
        job_def=job,
        run_config=run_config,
        tags=run_tags,
        asset_selection=frozenset(asset_selection) if asset_selection else None,
        remote_job_origin=remote_origin(job.name, parent),
        job_code_origin=code_origin,
    )
    return execute_run(InMemoryJob(job), run, instance, raise_on_error=False)
