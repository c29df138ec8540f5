"""Every knob in one traitlets Configurable, plus ``timeback.config.json`` in Timeback's format.

Set knobs as ``c.Timeback.<name>`` in ``jupyter_server_config.py`` (:mod:`.settings`); courses
come from ``timeback.config.json`` (:mod:`.courses`). Credentials never become traits: they are
read from the environment under the names the official clients use and are only ever shown
masked.
"""

from .common import (
    CONFIG_FILE_NAME,
    ENVIRONMENTS,
    LOCAL_SENSOR,
    ONEROSTER_BASE_URLS,
    ROSTERING_PATH,
    ConfigError,
)
from .courses import (
    AppConfig,
    CatalogActivity,
    Course,
    default_app_config,
    load_app_config,
    parse_app_config,
)
from .settings import Credentials, Timeback

__all__ = [
    "CONFIG_FILE_NAME",
    "ENVIRONMENTS",
    "LOCAL_SENSOR",
    "ONEROSTER_BASE_URLS",
    "ROSTERING_PATH",
    "AppConfig",
    "CatalogActivity",
    "ConfigError",
    "Course",
    "Credentials",
    "Timeback",
    "default_app_config",
    "load_app_config",
    "parse_app_config",
]
