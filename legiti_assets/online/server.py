"""HTTP API serving the latest feature values from the online store.

    GET  /health
    GET  /features/{entity}/{key}[?feature_sets=name,name]    e.g. /features/user/<cpf>
    POST /features/{entity}   {"keys": ["..."], "feature_sets": ["..."]}   (feature_sets optional)

Every registered feature set of the entity is served unless `feature_sets` narrows it.

Errors are JSON ``{"error": "..."}``. Run with ``python -m legiti_assets.online.server``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from legiti_assets import layout
from legiti_assets.catalog import ONLINE_TABLES
from legiti_assets.online import (
    Features,
    FeatureSetTable,
    OnlineStore,
    open_online_store,
)

logger = logging.getLogger(__name__)

SERVED_TABLES: tuple[FeatureSetTable, ...] = tuple(ONLINE_TABLES.values())

MAX_BATCH_KEYS = 1000
MAX_BODY_BYTES = 1 << 20


class _StoreHolder:
    """One store per worker process, opened once and reused by every request."""

    def __init__(self, factory: Callable[[], OnlineStore]) -> None:
        self._factory = factory
        self._store: OnlineStore | None = None
        self._lock = threading.Lock()

    def get(self) -> OnlineStore:
        store = self._store
        if store is None:
            with self._lock:
                if self._store is None:
                    self._store = self._factory()
                store = self._store
        return store

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


def _error(status_code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status_code, headers=headers)


def create_app(
    store_factory: Callable[[], OnlineStore], feature_sets: Sequence[FeatureSetTable]
) -> Starlette:
    """Build the API. ``store_factory`` is called once per process, at startup."""
    tables = {table.name: table for table in feature_sets}
    if not tables or len(tables) != len(feature_sets):
        raise ValueError("feature_sets must be non-empty with unique names")
    all_tables = list(tables.values())
    entity_keys = {table.entity: table.key for table in all_tables}
    holder = _StoreHolder(store_factory)

    def select_tables(entity: str, names: Any) -> list[FeatureSetTable]:
        if names is None:
            return [t for t in all_tables if t.entity == entity]
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(n, str) and n for n in names)
        ):
            raise HTTPException(400, "feature_sets must be a non-empty list of feature set names")
        unknown = [n for n in names if n not in tables]
        if unknown:
            raise HTTPException(400, f"unknown feature sets {unknown}; known: {list(tables)}")
        other = [n for n in names if tables[n].entity != entity]
        if other:
            raise HTTPException(400, f"feature sets {other} are not of entity {entity!r}")
        return [tables[n] for n in dict.fromkeys(names)]

    def check_entity(request: Request) -> str:
        entity = request.path_params["entity"]
        if entity not in entity_keys:
            raise HTTPException(404, f"unknown entity {entity!r}; known: {sorted(entity_keys)}")
        return entity

    def render(
        entity: str, key: str, features: Features, selected: Sequence[FeatureSetTable]
    ) -> dict[str, Any]:
        timestamps: dict[str, str | None] = {}
        for table in selected:
            ts: datetime | None = features[table.timestamp_feature]
            timestamps[table.name] = None if ts is None else ts.isoformat()
        return {
            "entity": entity,
            entity_keys[entity]: key,
            "features": {c: features[c] for t in selected for c in t.feature_columns},
            "timestamps": timestamps,
        }

    async def read(
        entity: str, keys: list[str], selected: Sequence[FeatureSetTable]
    ) -> list[dict[str, Any]]:
        # Store calls block (SQLite, redis-py), so keep them off the event loop.
        found = await run_in_threadpool(holder.get().get_features, entity, keys, selected)
        return [render(entity, key, found[key], selected) for key in keys]

    async def health(request: Request) -> JSONResponse:
        try:
            await run_in_threadpool(lambda: holder.get().ping())
        except Exception as exc:
            logger.exception("online store health check failed")
            return JSONResponse(
                {"status": "error", "error": f"online store unavailable: {exc}"}, status_code=503
            )
        return JSONResponse({"status": "ok"})

    async def get_one(request: Request) -> JSONResponse:
        entity = check_entity(request)
        raw = request.query_params.get("feature_sets")
        selected = select_tables(
            entity, None if raw is None else [n.strip() for n in raw.split(",")]
        )
        (payload,) = await read(entity, [request.path_params["key"]], selected)
        return JSONResponse(payload)

    async def get_many(request: Request) -> JSONResponse:
        entity = check_entity(request)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise HTTPException(413, f"request body exceeds {MAX_BODY_BYTES} bytes")
        try:
            payload = json.loads(body)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise HTTPException(400, f"request body is not valid JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise HTTPException(400, 'request body must be a JSON object {"keys": [...]}')
        unexpected = sorted(set(payload) - {"keys", "feature_sets"})
        if unexpected:
            raise HTTPException(400, f"unexpected fields {unexpected}; allowed: keys, feature_sets")
        keys = payload.get("keys")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise HTTPException(400, '"keys" must be a list of strings')
        if len(keys) > MAX_BATCH_KEYS:
            raise HTTPException(400, f'"keys" has {len(keys)} items; the limit is {MAX_BATCH_KEYS}')
        selected = select_tables(entity, payload.get("feature_sets"))
        return JSONResponse(await read(entity, keys, selected))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, exc.detail, exc.headers)

    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the traceback; the client only learns that it failed.
        return _error(500, "internal server error")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Open eagerly so a bad store URL fails the startup instead of the first request.
        await run_in_threadpool(holder.get)
        try:
            yield
        finally:
            holder.close()

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/features/{entity}/{key}", get_one, methods=["GET"]),
            Route("/features/{entity}", get_many, methods=["POST"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: internal_error},
        lifespan=lifespan,
    )


def main(
    argv: Sequence[str] | None = None,
    feature_sets: Sequence[FeatureSetTable] = SERVED_TABLES,
) -> None:
    data_dir = os.environ.get("LEGITI_DATA_DIR") or "data"
    parser = argparse.ArgumentParser(description="Serve online features over HTTP.")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=os.environ.get("PORT", "8000"))
    parser.add_argument(
        "--store-url",
        default=os.environ.get("LEGITI_ONLINE_STORE")
        or f"sqlite:///{data_dir}/{layout.ONLINE_STORE_FILE}",
        help="sqlite:///path.db or redis://host:port/db (env LEGITI_ONLINE_STORE)",
    )
    parser.add_argument("--redis-key-prefix", default="legiti")
    parser.add_argument("--no-access-log", action="store_true")
    args = parser.parse_args(argv)

    def store_factory() -> OnlineStore:
        return open_online_store(args.store_url, redis_key_prefix=args.redis_key_prefix)

    app = create_app(store_factory, feature_sets)
    uvicorn.run(app, host=args.host, port=args.port, access_log=not args.no_access_log)


if __name__ == "__main__":
    main()
