"""Runs executed in this process are recorded as the daemon records the runs it launches: in the
workspace's code location, with the tags of what launched the run executing them."""

from pathlib import Path

import dagster as dg
import pytest
import yaml

from legiti_assets import attribution

REPO = Path(__file__).resolve().parents[1]
days = dg.DailyPartitionsDefinition(start_date="2020-01-01", end_date="2020-01-05")


@dg.asset(partitions_def=days)
def daily(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"day": context.partition_key})


@dg.asset
def other() -> None:
    return None


# in this process, as executor.bound's jobs run
JOB = dg.Definitions(
    assets=[daily, other],
    jobs=[dg.define_asset_job("both", partitions_def=days)],
    executor=dg.in_process_executor,
).resolve_job_def("both")


def test_the_location_is_the_one_workspace_yaml_declares() -> None:
    (entry,) = yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"]
    module = entry["python_module"]
    # a python_module entry without a location_name is named after its module
    assert "location_name" not in module
    assert module["module_name"] == attribution.LOCATION


def test_a_run_of_this_process_is_the_code_locations() -> None:
    instance = dg.DagsterInstance.ephemeral()
    result = attribution.execute(
        JOB,
        instance,
        asset_selection=[dg.AssetKey("daily")],
        partition_key="2020-01-03",
        tags={"team": "fraud"},
    )
    assert result.success
    run = result.dagster_run
    assert run.remote_job_origin is not None
    assert run.remote_job_origin.repository_origin.get_label() == (
        "__repository__@legiti_assets.definitions"
    )
    assert run.remote_job_origin.job_name == "both"
    assert run.asset_selection == {dg.AssetKey("daily")}
    assert run.tags["dagster/partition"] == "2020-01-03"
    assert run.tags["team"] == "fraud"
    assert "dagster/sensor_name" not in run.tags  # a person launched it: "Manually launched"
    (event,) = result.get_asset_materialization_events()
    assert event.materialization.metadata["day"].value == "2020-01-03"
    # what launched a run is inherited by the runs it executes, which name it
    child = attribution.execute(JOB, instance, asset_selection=[dg.AssetKey("other")], parent=run)
    assert child.dagster_run.tags == {
        "dagster/code_location": "legiti_assets.definitions",
        attribution.LAUNCHED_IN_TAG: run.run_id,
    }
    sensed = instance.create_run_for_job(JOB, tags={"dagster/sensor_name": "landing_sensor"})
    child = attribution.execute(
        JOB, instance, asset_selection=[dg.AssetKey("other")], parent=sensed
    )
    assert child.success
    assert child.dagster_run.tags == {
        "dagster/code_location": "legiti_assets.definitions",
        "dagster/sensor_name": "landing_sensor",
        attribution.LAUNCHED_IN_TAG: sensed.run_id,
    }
    # the parent's own code location, when it has one (the daemon's runs)
    assert child.dagster_run.remote_job_origin.repository_origin.get_label() == (  # type: ignore[union-attr]
        "__repository__@legiti_assets.definitions"
    )


def test_a_failed_run_is_a_result_not_an_exception() -> None:
    @dg.asset
    def broken() -> None:
        raise RuntimeError("planned failure")

    job = dg.Definitions(
        assets=[broken], jobs=[dg.define_asset_job("b")], executor=dg.in_process_executor
    ).resolve_job_def("b")
    result = attribution.execute(job, dg.DagsterInstance.ephemeral())
    assert not result.success
    assert result.dagster_run.status == dg.DagsterRunStatus.FAILURE


def test_a_job_of_another_executor_is_refused() -> None:
    job = dg.Definitions(assets=[other], jobs=[dg.define_asset_job("o")]).resolve_job_def("o")
    with pytest.raises(ValueError, match="job o: executed here, it needs the in-process executor"):
        attribution.execute(job, dg.DagsterInstance.ephemeral())
