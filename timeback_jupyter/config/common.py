"""Names and the one error every part of the configuration shares."""

from __future__ import annotations

ENVIRONMENTS = ("staging", "production")
CONFIG_FILE_NAME = "timeback.config.json"
# Used by the local sink when no timeback.config.json names a sensor: an absolute URL, as
# Timeback requires, under a name nobody resolves.
LOCAL_SENSOR = "https://timeback-jupyter.local"
# OneRoster hosts the official SDK builds actor and course IRIs from (timeback-core 0.4).
ONEROSTER_BASE_URLS = {
    "staging": "https://api.staging.alpha-1edtech.ai",
    "production": "https://api.alpha-1edtech.ai",
}
ROSTERING_PATH = "/ims/oneroster/rostering/v1p2"


class ConfigError(ValueError):
    """The configuration cannot be used; the message says where and why."""


# The relay a hub names for its users' servers (set with c.Spawner.environment): hub mode.
RELAY_URL_ENV = "TIMEBACK_RELAY_URL"
