"""The deployment's settings that shape the definitions themselves (not a run's resources),
from `LEGITI_*` variables: the first partition (`first_day`, read by `partitions.py`) and the
sensor's interval (`Settings`, read where `definitions.py` builds `defs`)."""

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass

SENSOR_INTERVAL_ENV = "LEGITI_SENSOR_INTERVAL_SECONDS"
FIRST_DAY_ENV = "LEGITI_FIRST_DAY"
# The sample's first order day. Partitions start here: a store of older data sets its own.
DEFAULT_FIRST_DAY = dt.date(2018, 5, 12)


def first_day(env: Mapping[str, str] | None = None) -> dt.date:
    """The first daily partition (UTC), the oldest day an event may fall on: `LEGITI_FIRST_DAY`
    in `env` (default: the process's environment), else the sample's first day; a value that is
    not a day raises naming the variable."""
    raw = (os.environ if env is None else env).get(FIRST_DAY_ENV, "").strip()
    if not raw:
        return DEFAULT_FIRST_DAY
    try:
        # exactly YYYY-MM-DD: Python 3.11's fromisoformat also takes 20160229
        day = dt.date.fromisoformat(raw) if len(raw) == 10 else None
    except ValueError:
        day = None
    if day is None or not dt.date(1970, 1, 1) <= day < dt.date(2100, 1, 1):
        raise ValueError(f"{FIRST_DAY_ENV}={raw!r}: expected a day YYYY-MM-DD in 1970..2099")
    return day


@dataclass(frozen=True)
class Settings:
    """`sensor_interval_seconds`: how often the landing sensor looks at the landing."""

    sensor_interval_seconds: int = 30

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """The settings `env` (default: the process's environment) sets, else the defaults;
        a value that is not one raises naming the variable."""
        env = os.environ if env is None else env
        raw = env.get(SENSOR_INTERVAL_ENV)
        if not raw:
            return cls()
        try:
            interval = int(raw)
        except ValueError:
            interval = 0
        if interval < 1:
            raise ValueError(f"{SENSOR_INTERVAL_ENV}={raw!r}: expected whole seconds, >= 1")
        return cls(sensor_interval_seconds=interval)
