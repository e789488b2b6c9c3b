"""The supported storage path: the main job, the landing sensor and the update it launches with
the Dagster instance in PostgreSQL (deploy/dagster-postgres.yaml), as a shared deployment runs.

Needs LEGITI_TEST_POSTGRES_URL (a server this test may create databases on);
`scripts/with-postgres make test` starts a throwaway one, as `.ci/run` does."""

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from legiti_assets.automation import SETTLE_SECONDS, landing_sensor
from legiti_assets.definitions import definitions, defs
from legiti_assets.executor import QUIET
from legiti_assets.jobs import COMPUTE_FEATURES, INGEST_EVENTS
from legiti_assets.resources import DataDir
from legiti_assets.update import TODAY_TAG, UPDATE, UPDATE_TAG
from legiti_assets_tests.helpers import SAMPLE, feature_rows, resources_for, t

REPO = Path(__file__).resolve().parents[1]
SERVER = os.environ.get("LEGITI_TEST_POSTGRES_URL")
HEADER = "order_id,order_timestamp,cpf,chargeback_timestamp\n"

pytestmark = pytest.mark.skipif(
    SERVER is None,
    reason="set LEGITI_TEST_POSTGRES_URL (or run under scripts/with-postgres) for PostgreSQL",
)


@pytest.fixture
def postgres_url():
    """A database of its own on the test server, dropped afterwards."""
    import psycopg2

    name = f"legiti_{uuid.uuid4().hex[:12]}"
    assert SERVER is not None
    admin = psycopg2.connect(SERVER)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    try:
        # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; dagster-postgres brings psycopg2
        yield (
            SERVER.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg2://") + f"/{name}"
        )
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


def _settled(path: Path) -> None:
    old = time.time() - 10 * SETTLE_SECONDS
    os.utime(path, (old, old))


def test_main_job_and_sensor_on_postgres(tmp_path, monkeypatch, postgres_url) -> None:
    data, home = tmp_path / "data", tmp_path / "home"
    (data / "order_events").mkdir(parents=True)
    shutil.copy(SAMPLE, data / "order_events" / "input.csv")
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster-postgres.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_POSTGRES_URL": postgres_url,
        "LEGITI_DATA_DIR": str(data),
    }
    # the main job, as `make awesome-dataset` runs it
    done = subprocess.run(
        [sys.executable, "-m", "legiti_assets.run", "--start", "2018-05-12", "--end", "2020-07-17"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "awesome_dataset: 9 rows" in done.stdout
    assert "Warning" not in done.stderr, done.stderr[-3000:]
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", postgres_url)
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        runs = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]))
        assert sorted(r.dagster_run.job_name for r in runs) == [COMPUTE_FEATURES, INGEST_EVENTS]
        dataset = instance.get_latest_materialization_event(dg.AssetKey("awesome_dataset"))
        assert dataset is not None
        assert dataset.asset_materialization.metadata["dagster/row_count"].value == 9  # type: ignore[union-attr]
        # the range run recorded every day's materialization
        days = instance.get_materialized_partitions(dg.AssetKey("user_orders"))
        assert len(days) == 798 and {"2018-05-12", "2020-07-17"} <= days

        # the sensor, its cursor and the update it launches, recorded in PostgreSQL
        drop = data / "order_events" / "later-2020-07-18.csv"
        drop.write_text(HEADER + "j,2020-07-17 09:00:00,w,\n")
        for path in (data / "order_events").iterdir():
            _settled(path)
        context = dg.build_sensor_context(
            instance=instance,
            resources={"data_dir": DataDir(path=str(data))},
            repository_def=defs.get_repository_def(),
        )
        tick = landing_sensor().evaluate_tick(context)
        assert len(tick.run_requests or []) == 1
        job = definitions(resources_for(data)).resolve_job_def(UPDATE)
        result = job.execute_in_process(
            instance=instance,
            tags={**tick.run_requests[0].tags, TODAY_TAG: "2020-07-18"},  # type: ignore[index]
            run_config=QUIET,
        )
        assert result.success
        update_id = result.output_for_node("update_store")[0].split()[1].rstrip(":")
        nested = instance.get_run_records(dg.RunsFilter(tags={UPDATE_TAG: update_id}))
        assert len(nested) == 3
        assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in nested)
    assert ("w", t("2020-07-18"), 1, 1, 1) in feature_rows(data, "user_orders")
