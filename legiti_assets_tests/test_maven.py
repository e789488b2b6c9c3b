from collections.abc import Sequence
from pathlib import Path

import pytest

from legiti_assets import maven

COORDINATES = ("org.example:first:1.0", "org.example:second:2.0")


@pytest.fixture
def ivy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LEGITI_IVY_DIR", str(tmp_path))
    monkeypatch.setattr(maven, "RETRY_PAUSE_SECONDS", 0.0)
    return tmp_path


def _flaky_submit(failures: int, calls: list[tuple[str, ...]]):
    """A stand-in for spark-submit that fails `failures` times (fetching only the first jar),
    then fetches every jar asked for."""

    def submit(coordinates: Sequence[str]) -> tuple[int, str]:
        calls.append(tuple(coordinates))
        fetched = coordinates[:1] if len(calls) <= failures else coordinates
        for c in fetched:
            path = maven.jar_path(c)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"jar")
        return (1, "download failed") if len(calls) <= failures else (0, "")

    return submit


def test_jars_retry_a_failed_download_then_come_from_the_cache(
    ivy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(maven, "_submit", _flaky_submit(failures=2, calls=calls))
    paths = maven.jars(COORDINATES)
    assert paths == [
        ivy / "jars" / "org.example_first-1.0.jar",
        ivy / "jars" / "org.example_second-2.0.jar",
    ]
    assert all(p.is_file() for p in paths)
    assert calls == [COORDINATES] * 3
    assert maven.jars(COORDINATES) == paths
    assert len(calls) == 3


def test_jars_raise_naming_what_is_missing_after_every_attempt_fails(
    ivy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(maven, "_submit", _flaky_submit(failures=99, calls=calls))
    with pytest.raises(RuntimeError, match=r"org\.example:second:2\.0 from Maven Central.*3 times"):
        maven.jars(COORDINATES)
    assert len(calls) == maven.RESOLVE_ATTEMPTS
