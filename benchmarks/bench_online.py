"""Benchmark the online store backends in-process and over HTTP.

    uv run python benchmarks/bench_online.py [--users 100000] [--redis-url redis://127.0.0.1:6379/15]

SQLite always runs (in a temp dir). Redis runs when --redis-url or LEGITI_BENCH_REDIS_URL is set;
it writes under a unique key prefix and deletes exactly those keys afterwards.

HTTP latency is measured open-loop: requests are scheduled at a fixed rate and each latency is
taken from its scheduled send time, so a slow server cannot hide queueing by slowing the client.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import redis

from legiti_assets.online import OnlineStore, open_online_store
from legiti_assets.online.server import SERVED_TABLES

TARGET_LOAD_S = 30.0
TARGET_READ_P99_MS = {"sqlite": 1.0, "redis": 2.0}
TARGET_HTTP_P99_MS = 10.0
BATCH_KEYS = 100


def cpf(i: int) -> str:
    return f"{i:011d}"


def rows_for(table_index: int, users: int) -> Iterator[tuple[str, datetime, tuple[int, int, int]]]:
    base = datetime(2020, 1, 1, tzinfo=UTC)
    for i in range(users):
        c3 = (i + table_index) % 4
        c7 = c3 + i % 3
        yield cpf(i), base + timedelta(days=i % 30), (c3, c7, c7 + i % 5)


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


@dataclass
class Latency:
    p50_ms: float
    p99_ms: float
    count: int
    errors: int = 0
    rate: float | None = None

    @classmethod
    def of(cls, seconds: Sequence[float], errors: int = 0, rate: float | None = None) -> Latency:
        if not seconds:
            return cls(float("nan"), float("nan"), 0, errors, rate)
        ms = [s * 1000 for s in seconds]
        return cls(percentile(ms, 0.50), percentile(ms, 0.99), len(ms), errors, rate)


@dataclass
class Result:
    backend: str
    rows: int = 0
    load_s: float = 0.0
    single: Latency | None = None
    batch: Latency | None = None
    http_single: Latency | None = None
    http_batch: Latency | None = None


def time_calls(call: Callable[[], object], samples: int) -> list[float]:
    for _ in range(min(100, samples)):  # warm caches and connections
        call()
    timings = []
    for _ in range(samples):
        start = time.perf_counter()
        call()
        timings.append(time.perf_counter() - start)
    return timings


def bench_in_process(store: OnlineStore, result: Result, users: int, samples: int) -> None:
    tables = list(SERVED_TABLES)
    start = time.perf_counter()
    for index, table in enumerate(tables):
        result.rows += store.write_latest(table, rows_for(index, users))
    result.load_s = time.perf_counter() - start
    for table in tables:
        assert store.count(table) == users, f"{table.name}: expected {users} stored states"

    rng = random.Random(7)
    result.single = Latency.of(
        time_calls(lambda: store.get_features("user", [cpf(rng.randrange(users))], tables), samples)
    )
    result.batch = Latency.of(
        time_calls(
            lambda: store.get_features(
                "user", [cpf(rng.randrange(users)) for _ in range(BATCH_KEYS)], tables
            ),
            samples,
        )
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``python -m legiti_assets.online.server`` in a subprocess, always stopped on exit."""

    def __init__(self, store_url: str, redis_key_prefix: str, log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "legiti_assets.online.server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--store-url",
                store_url,
                "--redis-key-prefix",
                redis_key_prefix,
                "--no-access-log",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def __enter__(self) -> Server:
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_healthy(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not become healthy:\n{self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def open_loop(
    base_url: str,
    send: Callable[[httpx.Client, int], httpx.Response],
    rate: float,
    duration_s: float,
    threads: int = 16,
) -> Latency:
    """Send ``rate * duration_s`` requests on a fixed schedule from a pool of keep-alive clients."""
    total = int(rate * duration_s)
    latencies: list[float | None] = [None] * total
    errors = [0] * threads
    start_box: list[float] = []
    # The clock starts once every client is connected, not when the threads are spawned.
    ready = threading.Barrier(threads, action=lambda: start_box.append(time.perf_counter() + 0.05))
    hard_stop_s = duration_s + 10  # bounded in time even if the server stalls

    def worker(w: int) -> None:
        with httpx.Client(base_url=base_url, timeout=2.0) as client:
            client.get("/health")  # open the keep-alive connection before the clock starts
            ready.wait()
            start = start_box[0]
            for i in range(w, total, threads):
                scheduled = start + i / rate
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                if time.perf_counter() - start > hard_stop_s:
                    errors[w] += 1
                    continue
                try:
                    ok = send(client, i).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies[i] = time.perf_counter() - scheduled
                else:
                    errors[w] += 1

    pool = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - start_box[0]
    done = [s for s in latencies if s is not None]
    return Latency.of(done, errors=sum(errors), rate=total / elapsed)


def bench_http(
    result: Result, store_url: str, prefix: str, users: int, args: argparse.Namespace
) -> None:
    rng = random.Random(11)
    single_keys = [
        cpf(rng.randrange(users)) for _ in range(int(args.http_rate * args.http_seconds))
    ]
    batch_bodies = [
        {"keys": [cpf(rng.randrange(users)) for _ in range(BATCH_KEYS)]}
        for _ in range(int(args.http_batch_rate * args.http_seconds))
    ]
    with tempfile.TemporaryDirectory() as tmp, Server(store_url, prefix, Path(tmp) / "log") as srv:
        result.http_single = open_loop(
            srv.base_url,
            lambda client, i: client.get(f"/features/user/{single_keys[i]}"),
            args.http_rate,
            args.http_seconds,
        )
        result.http_batch = open_loop(
            srv.base_url,
            lambda client, i: client.post("/features/user", json=batch_bodies[i]),
            args.http_batch_rate,
            args.http_seconds,
        )


def delete_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        batch = []
        for key in client.scan_iter(match=f"{prefix}:*", count=5000):
            batch.append(key)
            if len(batch) == 5000:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
    finally:
        client.close()


def run_backend(backend: str, args: argparse.Namespace, redis_url: str | None) -> Result:
    result = Result(backend)
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/online_store.db"
            with open_online_store(url) as store:
                bench_in_process(store, result, args.users, args.samples)
            if not args.skip_http:
                bench_http(result, url, "legiti", args.users, args)
        return result

    assert redis_url
    prefix = f"legiti_bench_{uuid.uuid4().hex[:12]}"
    try:
        with open_online_store(redis_url, redis_key_prefix=prefix) as store:
            bench_in_process(store, result, args.users, args.samples)
        if not args.skip_http:
            bench_http(result, redis_url, prefix, args.users, args)
    finally:
        delete_prefix(redis_url, prefix)
    return result


def fmt_latency(latency: Latency | None, target_ms: float | None) -> str:
    if latency is None:
        return "-"
    text = f"{latency.p50_ms:.3f} / {latency.p99_ms:.3f}"
    if latency.errors:
        text += f" ({latency.errors} err)"
    if target_ms is not None:
        text += " ok" if latency.p99_ms < target_ms and not latency.errors else " MISS"
    return text


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    users = args.users

    def read_target(r: Result) -> float:
        return TARGET_READ_P99_MS[r.backend]

    lines: list[tuple[str, str, list[str]]] = [
        (
            f"load {users:,} users x 2 feature sets [s]",
            f"< {TARGET_LOAD_S:.0f} s",
            [f"{r.load_s:.2f}" + (" ok" if r.load_s < TARGET_LOAD_S else " MISS") for r in results],
        ),
        ("write throughput [rows/s]", "", [f"{r.rows / r.load_s:,.0f}" for r in results]),
        (
            "in-process 1 key p50 / p99 [ms]",
            "p99 < 1 (sqlite), < 2 (redis)",
            [fmt_latency(r.single, read_target(r)) for r in results],
        ),
        (
            f"in-process {BATCH_KEYS} keys p50 / p99 [ms]",
            "",
            [fmt_latency(r.batch, None) for r in results],
        ),
    ]
    if not args.skip_http:

        def rate(latency: Latency | None) -> str:
            return "-" if latency is None or latency.rate is None else f"{latency.rate:.0f}/s"

        lines += [
            (
                f"HTTP GET 1 key @ {args.http_rate:.0f}/s p50 / p99 [ms]",
                f"p99 < {TARGET_HTTP_P99_MS:.0f}",
                [fmt_latency(r.http_single, TARGET_HTTP_P99_MS) for r in results],
            ),
            ("  achieved rate", "", [rate(r.http_single) for r in results]),
            (
                f"HTTP POST {BATCH_KEYS} keys @ {args.http_batch_rate:.0f}/s p50 / p99 [ms]",
                "",
                [fmt_latency(r.http_batch, None) for r in results],
            ),
            ("  achieved rate", "", [rate(r.http_batch) for r in results]),
        ]

    header = ("metric", "target", [r.backend for r in results])
    rows = [header, *lines]
    w0 = max(len(m) for m, _, _ in rows)
    w1 = max(len(t) for _, t, _ in rows)
    wc = [max(len(cells[i]) for _, _, cells in rows) for i in range(len(results))]

    def render(metric: str, target: str, cells: list[str]) -> str:
        parts = [
            metric.ljust(w0),
            target.ljust(w1),
            *(c.rjust(w) for c, w in zip(cells, wc, strict=True)),
        ]
        return "  ".join(parts).rstrip()

    print()
    print(render(*header))
    print("-" * len(render(*header)))
    for line in lines:
        print(render(*line))
    print()
    print(
        f"in-process: {args.samples} samples each, both feature sets per key; "
        f"HTTP: open-loop for {args.http_seconds:.0f} s, latency from scheduled send time, "
        "uvicorn single process on loopback, access log off."
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("LEGITI_BENCH_REDIS_URL"),
        help="run the Redis backend too (default: env LEGITI_BENCH_REDIS_URL)",
    )
    parser.add_argument("--samples", type=int, default=2000, help="in-process reads per kind")
    parser.add_argument("--http-rate", type=float, default=200.0, help="single-key GETs per second")
    parser.add_argument(
        "--http-batch-rate", type=float, default=50.0, help="batch POSTs per second"
    )
    parser.add_argument("--http-seconds", type=float, default=10.0)
    parser.add_argument("--skip-http", action="store_true")
    args = parser.parse_args(argv)

    backends = ["sqlite"] + (["redis"] if args.redis_url else [])
    if not args.redis_url:
        print("Redis skipped: pass --redis-url or set LEGITI_BENCH_REDIS_URL.")
    results = []
    for backend in backends:
        print(f"benchmarking {backend} with {args.users:,} users ...", flush=True)
        results.append(run_backend(backend, args, args.redis_url))
    print_table(results, args)


if __name__ == "__main__":
    main()
