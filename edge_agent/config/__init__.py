"""The agent's configuration: rust-keylime's agent.conf, its load order and overrides.

``model``     AgentConfig, the frozen option table (names, types, defaults, flags)
``defaults``  the built-in defaults and the system paths, as named constants
``loader``    load_config(): files, ``.d`` snippets, KEYLIME_AGENT_* variables
``unknown``   keys the agent does not use: one warning each, an error with --strict
``values``    typing and checking option values
``agent_id``  the ``uuid`` option's modes (literal, generate, hash_ek, ...)
``errors``    the exception tree (ConfigError and below)
"""

from __future__ import annotations

from edge_agent.config.agent_id import resolve_agent_id
from edge_agent.config.errors import (
    ConfigError,
    ConfigFileError,
    OptionValueError,
    UnknownOptionError,
)
from edge_agent.config.loader import (
    DEFAULT_PATHS,
    ConfigPaths,
    config_files,
    load_config,
    load_config_report,
)
from edge_agent.config.model import AgentConfig, option_names
from edge_agent.config.values import parse_api_versions

__all__ = [
    "DEFAULT_PATHS",
    "AgentConfig",
    "ConfigError",
    "ConfigFileError",
    "ConfigPaths",
    "OptionValueError",
    "UnknownOptionError",
    "config_files",
    "load_config",
    "load_config_report",
    "option_names",
    "parse_api_versions",
    "resolve_agent_id",
]
