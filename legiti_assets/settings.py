"""The deployment's settings that shape the definitions themselves (not a run's resources),
from `LEGITI_*` variables: the first partition (`partitions.py`) and the sensor's interval
(`definitions.py`)."""

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass

SENSOR_INTERVAL_ENV = "LEGITI_SENSOR_INTERVAL_SECONDS"
FIRST_DAY_ENV = "LEGITI_FIRST_DAY"
# The sample's first order day. Partitions start here: a store of older data sets its own.
DEFAULT_FIRST_DAY = dt.date(2018, 5, 12)


@dataclass(frozen=True)
class Settings:
    """`first_day`: the first daily partition (UTC), the oldest day an event may fall on;
    `sensor_interval_seconds`: how often the landing sensor looks at the landing."""

    first_day: dt.date = DEFAULT_FIRST_DAY
    sensor_interval_seconds: int = 30

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """The settings `env` (default: the process's environment) sets, else the defaults;
        a value that is not one raises naming the variable."""
        env = os.environ if env is None else env
        return cls(
            first_day=_first_day(env.get(FIRST_DAY_ENV)),
            sensor_interval_seconds=_interval(env.get(SENSOR_INTERVAL_ENV)),
        )


def _first_day(raw: str | None) -> dt.date:
    if not raw:
        return DEFAULT_FIRST_DAY
    try:
        day = dt.date.fromisoformat(raw.strip()) if len(raw.strip()) == 10 else None
    except ValueError:
        day = None
    if day is None or not dt.date(1970, 1, 1) <= day < dt.date(2100, 1, 1):
        raise ValueError(f"{FIRST_DAY_ENV}={raw!r}: expected a day YYYY-MM-DD in 1970..2099")
    return day


def _interval(raw: str | None) -> int:
    if not raw:
        return Settings.sensor_interval_seconds
    try:
        interval = int(raw)
    except ValueError:
        interval = 0
    if interval < 1:
        raise ValueError(f"{SENSOR_INTERVAL_ENV}={raw!r}: expected whole seconds, >= 1")
    return interval
