"""HTTP API over a real SQLite online store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from legiti_assets.catalog import ONLINE_TABLES
from legiti_assets.online import (
    COUNT,
    FLOAT,
    INT,
    FeatureSetTable,
    OnlineStore,
    RedisOnlineStore,
    SQLiteOnlineStore,
)
from legiti_assets.online.server import MAX_BATCH_KEYS, create_app

ORDERS = ONLINE_TABLES["user_orders"]
CHARGEBACKS = ONLINE_TABLES["user_chargebacks"]
DAY_1 = datetime(2020, 6, 1, tzinfo=UTC)
DAY_2 = datetime(2020, 6, 2, tzinfo=UTC)
HOSTILE_CPF = "1' OR '1'='1; DROP TABLE user_orders; --"

ZERO_ORDERS = dict.fromkeys(ORDERS.feature_columns, 0)
ZERO_CHARGEBACKS = dict.fromkeys(CHARGEBACKS.feature_columns, 0)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "online.db"
    with SQLiteOnlineStore(path) as store:
        store.write_latest(
            ORDERS,
            [
                ("11111111111", DAY_1, [1, 2, 3]),
                ("11111111111", DAY_2, [2, 4, 6]),
                ("22222222222", DAY_1, [0, 1, 5]),
                (HOSTILE_CPF, DAY_1, [7, 8, 9]),
            ],
        )
        store.write_latest(CHARGEBACKS, [("11111111111", DAY_1, [0, 0, 1])])
    return path


@pytest.fixture
def client(db: Path) -> Iterator[TestClient]:
    app = create_app(lambda: SQLiteOnlineStore(db), [ORDERS, CHARGEBACKS])
    with TestClient(app) as test_client:
        yield test_client


def user_1_payload() -> dict:
    return {
        "entity": "user",
        "cpf": "11111111111",
        "features": {
            "cpf_orders__count_over_3_days_rolling_windows": 2,
            "cpf_orders__count_over_7_days_rolling_windows": 4,
            "cpf_orders__count_over_30_days_rolling_windows": 6,
            "cpf_chargebacks__count_over_3_days_rolling_windows": 0,
            "cpf_chargebacks__count_over_7_days_rolling_windows": 0,
            "cpf_chargebacks__count_over_30_days_rolling_windows": 1,
        },
        "timestamps": {
            "user_orders": "2020-06-02T00:00:00+00:00",
            "user_chargebacks": "2020-06-01T00:00:00+00:00",
        },
    }


def unknown_payload(cpf: str) -> dict:
    return {
        "entity": "user",
        "cpf": cpf,
        "features": {**ZERO_ORDERS, **ZERO_CHARGEBACKS},
        "timestamps": {"user_orders": None, "user_chargebacks": None},
    }


def test_health(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_health_reports_unreachable_store() -> None:
    # Port 1 refuses connections: a real store that cannot answer.
    app = create_app(
        lambda: RedisOnlineStore("redis://127.0.0.1:1/0", socket_timeout_s=1), [ORDERS]
    )
    with TestClient(app) as client:
        response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["status"] == "error"
    assert "online store unavailable" in response.json()["error"]


def test_get_user_features(client: TestClient) -> None:
    response = client.get("/features/user/11111111111")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == user_1_payload()


def test_get_unknown_user_is_all_zeros(client: TestClient) -> None:
    response = client.get("/features/user/99999999999")
    assert response.status_code == 200
    assert response.json() == unknown_payload("99999999999")


def test_get_restricted_to_feature_sets(client: TestClient) -> None:
    response = client.get("/features/user/22222222222?feature_sets=user_orders")
    assert response.status_code == 200
    assert response.json() == {
        "entity": "user",
        "cpf": "22222222222",
        "features": dict(zip(ORDERS.feature_columns, [0, 1, 5], strict=True)),
        "timestamps": {"user_orders": "2020-06-01T00:00:00+00:00"},
    }
    both = client.get("/features/user/11111111111?feature_sets=user_chargebacks, user_orders")
    assert both.json()["timestamps"] == {
        "user_chargebacks": "2020-06-01T00:00:00+00:00",
        "user_orders": "2020-06-02T00:00:00+00:00",
    }


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("feature_sets=user_payments", "unknown feature sets ['user_payments']"),
        ("feature_sets=user_orders,nope", "unknown feature sets ['nope']"),
        ("feature_sets=", "feature_sets must be a non-empty list"),
        ("feature_sets=user_orders,", "feature_sets must be a non-empty list"),
    ],
)
def test_get_bad_feature_sets(client: TestClient, query: str, message: str) -> None:
    response = client.get(f"/features/user/11111111111?{query}")
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_get_hostile_cpf_is_just_a_key(client: TestClient, db: Path) -> None:
    response = client.get(f"/features/user/{quote(HOSTILE_CPF, safe='')}")
    assert response.status_code == 200
    body = response.json()
    assert body["cpf"] == HOSTILE_CPF
    assert [body["features"][c] for c in ORDERS.feature_columns] == [7, 8, 9]
    with SQLiteOnlineStore(db) as store:
        assert store.count(ORDERS) == 3


def test_post_batch_keeps_request_order(client: TestClient) -> None:
    keys = ["99999999999", "11111111111", HOSTILE_CPF, "11111111111"]
    response = client.post("/features/user", json={"keys": keys})
    assert response.status_code == 200
    body = response.json()
    assert [item["cpf"] for item in body] == keys
    assert body[0] == unknown_payload("99999999999")
    assert body[1] == user_1_payload()
    assert body[3] == user_1_payload()
    assert body[2]["timestamps"] == {
        "user_orders": "2020-06-01T00:00:00+00:00",
        "user_chargebacks": None,
    }


def test_post_batch_with_feature_sets_and_limits(client: TestClient) -> None:
    response = client.post(
        "/features/user", json={"keys": ["22222222222"], "feature_sets": ["user_chargebacks"]}
    )
    assert response.status_code == 200
    assert response.json() == [
        {
            "entity": "user",
            "cpf": "22222222222",
            "features": ZERO_CHARGEBACKS,
            "timestamps": {"user_chargebacks": None},
        }
    ]
    assert client.post("/features/user", json={"keys": []}).json() == []
    full = client.post("/features/user", json={"keys": ["11111111111"] * MAX_BATCH_KEYS})
    assert full.status_code == 200
    assert len(full.json()) == MAX_BATCH_KEYS


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"", "not valid JSON"),
        (b'["11111111111"]', "must be a JSON object"),
        (b"{}", '"keys" must be a list of strings'),
        (b'{"keys": "11111111111"}', '"keys" must be a list of strings'),
        (b'{"keys": [11111111111]}', '"keys" must be a list of strings'),
        (b'{"keys": ["a", null]}', '"keys" must be a list of strings'),
        (b'{"key": ["a"]}', "unexpected fields ['key']"),
        (
            b'{"keys": ["a"], "feature_sets": "user_orders"}',
            "feature_sets must be a non-empty list",
        ),
        (b'{"keys": ["a"], "feature_sets": []}', "feature_sets must be a non-empty list"),
        (b'{"keys": ["a"], "feature_sets": ["user_refunds"]}', "unknown feature sets"),
        (
            json.dumps({"keys": ["a"] * (MAX_BATCH_KEYS + 1)}).encode(),
            f'"keys" has {MAX_BATCH_KEYS + 1} items; the limit is {MAX_BATCH_KEYS}',
        ),
    ],
)
def test_post_rejects_bad_requests(client: TestClient, body: bytes, message: str) -> None:
    response = client.post(
        "/features/user", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_post_rejects_huge_body(client: TestClient) -> None:
    body = json.dumps({"keys": ["x" * 2000] * 600}).encode()
    response = client.post("/features/user", content=body)
    assert response.status_code == 413
    assert "request body exceeds" in response.json()["error"]


def test_unknown_entity_and_paths_are_json_404(client: TestClient) -> None:
    for response in (
        client.get("/features/merchant/123"),
        client.post("/features/merchant", json={"keys": ["123"]}),
    ):
        assert response.status_code == 404
        assert response.json() == {"error": "unknown entity 'merchant'; known: ['user']"}
    missing = client.get("/nothing/here")
    assert missing.status_code == 404
    assert missing.json() == {"error": "Not Found"}


def test_wrong_method_is_json_405(client: TestClient) -> None:
    response = client.get("/features/user")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json() == {"error": "Method Not Allowed"}


def test_store_opened_once_and_closed_on_shutdown(db: Path) -> None:
    opened: list[OnlineStore] = []

    def factory() -> OnlineStore:
        store = SQLiteOnlineStore(db)
        opened.append(store)
        return store

    with TestClient(create_app(factory, [ORDERS, CHARGEBACKS])) as client:
        for _ in range(5):
            assert client.get("/features/user/11111111111").status_code == 200
        assert client.post("/features/user", json={"keys": ["1"]}).status_code == 200
        assert len(opened) == 1
    with pytest.raises(Exception, match="closed"):
        opened[0].count(ORDERS)


def test_typed_features_are_json_numbers_and_nulls(tmp_path: Path) -> None:
    amounts = FeatureSetTable(
        "user_amounts", "cpf", ("n_orders", "max_amount", "avg_amount"), (COUNT, INT, FLOAT)
    )
    path = tmp_path / "typed.db"
    with SQLiteOnlineStore(path) as store:
        store.write_latest(
            amounts,
            [("11111111111", DAY_1, [2, None, 0.1]), ("22222222222", DAY_1, [1, 7, 3.0])],
        )
    app = create_app(lambda: SQLiteOnlineStore(path), [amounts])
    with TestClient(app) as client:
        first = client.get("/features/user/11111111111")
        batch = client.post("/features/user", json={"keys": ["22222222222", "99999999999"]})
    assert first.status_code == 200
    # The raw body, not just its parse: JSON null, and the float as the shortest repr.
    assert '"max_amount":null' in first.text
    assert '"avg_amount":0.1' in first.text
    assert first.json()["features"] == {"n_orders": 2, "max_amount": None, "avg_amount": 0.1}
    assert batch.status_code == 200
    known, unknown = (item["features"] for item in batch.json())
    assert known == {"n_orders": 1, "max_amount": 7, "avg_amount": 3.0}
    # An integral float stays a JSON float (3.0), an INT a JSON integer.
    assert type(known["avg_amount"]) is float
    assert type(known["max_amount"]) is int
    assert unknown == {"n_orders": 0, "max_amount": None, "avg_amount": None}
    assert batch.json()[1]["timestamps"] == {"user_amounts": None}


def test_create_app_rejects_duplicate_feature_sets(db: Path) -> None:
    with pytest.raises(ValueError, match="unique names"):
        create_app(lambda: SQLiteOnlineStore(db), [ORDERS, ORDERS])
