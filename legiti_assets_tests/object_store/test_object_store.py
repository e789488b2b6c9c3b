"""The platform on an S3-compatible object store equals the platform on a local disk.

An S3 server (moto's) on loopback; `LEGITI_DATA_DIR=s3a://legiti/data`, landing included: the
main job, then a correction applied by `make update`, then a pandas `get_historical_features`
through `deltalake`. The same steps on a local directory give the same tables, records and
features. Needs `LEGITI_OBJECT_STORE_TESTS=1` (`make test-object-store`).
"""

from __future__ import annotations

import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pandas as pd
import pytest
from upath import UPath

from legiti_assets import get_historical_features, storage
from legiti_assets_tests.cluster.processes import (
    SAMPLE,
    SAMPLE_END,
    SAMPLE_START,
    free_port,
    run_logged,
    sample_env,
    start,
    stop,
    wait_until,
)
from legiti_assets_tests.helpers import TABLES, read_table

BUCKET = "legiti"
# b moved to another day, h's chargeback reported: a correction the update applies
CORRECTION = (
    "order_id,order_timestamp,cpf,chargeback_timestamp\n"
    "b,2020-04-20 10:00:00,y,\n"
    "h,2020-07-15 02:00:00,x,2020-07-16 08:00:00\n"
)
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture
def s3_endpoint(tmp_path: Path) -> Iterator[str]:
    """An S3 server on a free loopback port, with an empty bucket; stopped afterwards."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path / "moto.log"
    server = Path(sys.executable).with_name("moto_server")
    proc = start([str(server), "-H", "127.0.0.1", "-p", str(port)], {}, log)
    try:
        wait_until(
            lambda: urllib.request.urlopen(endpoint, timeout=2).status == 200,
            60,
            "the S3 server",
            proc,
            log,
        )
        _s3(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        stop(proc)


def _s3(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def _s3_env(tmp: Path, endpoint: str) -> dict[str, str]:
    """The environment of a run on the bucket: S3 settings for Spark (s3a), `deltalake` and
    fsspec; the online store stays a local SQLite file."""
    conf_dir = tmp / "spark_conf"
    conf_dir.mkdir(parents=True)
    (conf_dir / "spark-defaults.conf").write_text(
        f"spark.hadoop.fs.s3a.endpoint {endpoint}\n"
        "spark.hadoop.fs.s3a.path.style.access true\n"
        "spark.hadoop.fs.s3a.connection.ssl.enabled false\n"
    )
    env = sample_env(tmp)  # its local data directory is only the DAGSTER_HOME's neighbour
    return {
        **env,
        **CREDENTIALS,
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "LEGITI_DATA_DIR": f"s3a://{BUCKET}/data",
        "LEGITI_ONLINE_STORE": f"sqlite:///{tmp / 'online_store.db'}",
        "SPARK_CONF_DIR": str(conf_dir),
    }


def _steps(env: dict[str, str], tmp: Path, write_landing) -> None:
    """The main job on the sample, then the correction landed and applied by `make update`."""
    write_landing("input.csv", SAMPLE.read_text())
    started = time.monotonic()
    main_job = ["-m", "legiti_assets.run", "--start", SAMPLE_START, "--end", SAMPLE_END]
    run_logged([sys.executable, *main_job], env, tmp / "run.log", 1200)
    write_landing("later-2020-07-18.csv", CORRECTION)
    run_logged([sys.executable, "-m", "legiti_assets.update"], env, tmp / "update.log", 1200)
    print(f"\nmain job and update on {env['LEGITI_DATA_DIR']}: {time.monotonic() - started:.0f}s")


@pytest.mark.timeout(2700)
def test_a_store_on_s3_equals_a_local_store(s3_endpoint, tmp_path, monkeypatch) -> None:
    remote_env = _s3_env(tmp_path / "s3", s3_endpoint)
    s3 = _s3(s3_endpoint)

    def put(name: str, text: str) -> None:
        s3.put_object(Bucket=BUCKET, Key=f"data/order_events/{name}", Body=text.encode())

    _steps(remote_env, tmp_path / "s3", put)

    local_env = sample_env(tmp_path / "local", LEGITI_SPARK_MASTER="local[2]")
    local_data = Path(local_env["LEGITI_DATA_DIR"])
    _steps(
        local_env, tmp_path / "local", lambda n, t: (local_data / "order_events" / n).write_text(t)
    )

    for name, value in {**CREDENTIALS, "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    remote_data = UPath(remote_env["LEGITI_DATA_DIR"])
    for name in TABLES:
        local = local_data / name
        rows = read_table(local)
        assert rows, f"the local run's {name} is empty"
        assert read_table(remote_data / name) == rows, name
        assert storage.recorded(remote_data / name) == storage.recorded(local), name
    # nothing in the bucket outside the data directory, nothing local beside the SQLite store
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert all(k.startswith("data/") for k in keys)

    spine = pd.DataFrame(
        {
            "cpf": ["x", "y", "z", "x"],
            "at": pd.to_datetime(
                ["2020-05-13 00:00:00", "2020-04-21 12:00:00", "2020-05-12", "2020-07-17"]
            ),
        }
    )
    features = ["user_orders", "user_chargebacks"]
    remote = get_historical_features(spine, features, timestamp="at", data_dir=str(remote_data))
    local = get_historical_features(spine, features, timestamp="at", data_dir=str(local_data))
    pd.testing.assert_frame_equal(remote, local)
    assert remote["user_orders__asof"].notna().any()
