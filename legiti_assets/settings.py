"""The deployment's settings that shape the definitions themselves (not a run's resources):
read once, where `definitions.py` builds `defs`, from `LEGITI_*` variables."""

import os
from collections.abc import Mapping
from dataclasses import dataclass

SENSOR_INTERVAL_ENV = "LEGITI_SENSOR_INTERVAL_SECONDS"


@dataclass(frozen=True)
class Settings:
    """`sensor_interval_seconds`: how often the landing sensor looks at the landing."""

    sensor_interval_seconds: int = 30

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """The settings `env` (default: the process's environment) sets, else the defaults;
        a value that is not one raises naming the variable."""
        env = os.environ if env is None else env
        settings = cls()
        raw = env.get(SENSOR_INTERVAL_ENV)
        if raw:
            try:
                interval = int(raw)
            except ValueError:
                interval = 0
            if interval < 1:
                raise ValueError(f"{SENSOR_INTERVAL_ENV}={raw!r}: expected whole seconds, >= 1")
            settings = cls(sensor_interval_seconds=interval)
        return settings
