"""Loading agent.conf the way rust-keylime does (keylime/src/config/file_config.rs, env.rs).

Layers, each overriding the one before:

1. the built-in defaults (``AgentConfig()``);
2. ``/usr/etc/keylime/agent.conf``, then every file in ``/usr/etc/keylime/agent.conf.d/``
   in name order, then ``/etc/keylime/agent.conf`` and ``/etc/keylime/agent.conf.d/`` the same
   way (missing files and directories are skipped) -- or, when ``KEYLIME_AGENT_CONFIG`` names
   a file, that one file instead of all four (an error if it does not exist);
3. ``KEYLIME_AGENT_<OPTION>`` environment variables; then ``KEYLIME_DIR``, when set and not
   empty, replaces ``keylime_dir``.

rust-keylime ignores keys it does not know; limelet ignores them too, so any agent.conf
rust-keylime starts with also starts limelet, but warns once per key with the closest known
option (edge_agent.config.unknown), and ``strict=True`` makes them errors naming the key and
the file.  The system paths are a ``ConfigPaths`` so tests can point them at a temp dir.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.config import defaults as d
from edge_agent.config.agent_id import check_uuid_option
from edge_agent.config.errors import (
    ConfigFileError,
    OptionValueError,
)
from edge_agent.config.model import AgentConfig, option_names, option_spec
from edge_agent.config.unknown import IgnoredOption, closest_option, report
from edge_agent.config.values import (
    OptionValue,
    check_host,
    check_port,
    coerce,
    parse_api_versions,
    shown,
)
from edge_agent.tpm.errors import TpmConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib

__all__ = ["DEFAULT_PATHS", "ConfigPaths", "config_files", "load_config", "load_config_report"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConfigPaths:
    """The four default locations, in load order."""

    sys_file: Path = d.SYS_CONFIG_FILE
    sys_snippets: Path = d.SYS_CONFIG_SNIPPETS_DIR
    file: Path = d.CONFIG_FILE
    snippets: Path = d.CONFIG_SNIPPETS_DIR


DEFAULT_PATHS = ConfigPaths()


def config_files(paths: ConfigPaths, environ: Mapping[str, str]) -> list[Path]:
    """The files that will be read, in order."""
    override = environ.get(d.CONFIG_OVERRIDE_ENV_VAR, "")
    if override:
        path = Path(override)
        if not path.is_file():
            raise ConfigFileError(d.CONFIG_OVERRIDE_ENV_VAR, f"{path} does not exist")
        log.warning("Configuration replaced by %s: %s", d.CONFIG_OVERRIDE_ENV_VAR, path)
        return [path]
    found: list[Path] = []
    for file, snippets in ((paths.sys_file, paths.sys_snippets), (paths.file, paths.snippets)):
        if file.is_file():
            found.append(file)
        if snippets.is_dir():
            found.extend(sorted(p for p in snippets.iterdir() if p.is_file()))
    return found


def load_config(
    *,
    environ: Mapping[str, str] = os.environ,
    paths: ConfigPaths = DEFAULT_PATHS,
    strict: bool = False,
) -> AgentConfig:
    """The effective configuration; raises a ConfigError subclass naming what is wrong.

    Keys the agent does not use are logged once each, or with ``strict`` are an error.
    """
    config, ignored = load_config_report(environ=environ, paths=paths)
    report(ignored, strict=strict)
    return config


def load_config_report(
    *, environ: Mapping[str, str] = os.environ, paths: ConfigPaths = DEFAULT_PATHS
) -> tuple[AgentConfig, tuple[IgnoredOption, ...]]:
    """The effective configuration and the keys it ignored (nothing logged about those)."""
    values: dict[str, OptionValue] = {}
    origin: dict[str, str] = {}
    ignored: list[IgnoredOption] = []
    for path in config_files(paths, environ):
        for name, value in _read_file(path, ignored).items():
            values[name], origin[name] = value, str(path)
    for name, (value, variable) in _read_environment(environ, ignored).items():
        values[name], origin[name] = value, variable
    keylime_dir = environ.get(d.KEYLIME_DIR_ENV_VAR, "")
    if keylime_dir:
        values["keylime_dir"], origin["keylime_dir"] = keylime_dir, d.KEYLIME_DIR_ENV_VAR
    config = AgentConfig(**values)  # type: ignore[arg-type]
    _validate(config, origin)
    _warn_not_implemented(config)
    return config, tuple(ignored)


def _read_file(path: Path, ignored: list[IgnoredOption]) -> dict[str, OptionValue]:
    try:
        with path.open("rb") as stream:
            raw = stream.read(d.MAX_CONFIG_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigFileError(str(path), f"cannot read: {exc.strerror}") from exc
    if len(raw) > d.MAX_CONFIG_FILE_BYTES:
        raise ConfigFileError(str(path), f"larger than {d.MAX_CONFIG_FILE_BYTES} bytes")
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigFileError(str(path), f"not valid TOML: {exc}") from exc
    for table in doc:
        if table != d.AGENT_TABLE:  # rust-keylime reads only [agent] and ignores the rest
            ignored.append(IgnoredOption(f"[{table}]", str(path), f"[{d.AGENT_TABLE}]", False))
    agent = doc.get(d.AGENT_TABLE, {})
    if not isinstance(agent, dict):
        raise ConfigFileError(str(path), f"{d.AGENT_TABLE!r} is not a table")
    found: dict[str, OptionValue] = {}
    for name, raw in agent.items():
        if _known(name, str(path), ignored):
            found[name] = _coerced(name, raw, str(path))
    return found


def _read_environment(
    environ: Mapping[str, str], ignored: list[IgnoredOption]
) -> dict[str, tuple[OptionValue, str]]:
    found: dict[str, tuple[OptionValue, str]] = {}
    for variable, text in environ.items():
        if not variable.startswith(d.ENV_PREFIX) or variable == d.CONFIG_OVERRIDE_ENV_VAR:
            continue
        name = variable[len(d.ENV_PREFIX) :].lower()
        if _known(name, variable, ignored):
            found[name] = (_coerced(name, text, variable), variable)
    return found


def _known(name: str, source: str, ignored: list[IgnoredOption]) -> bool:
    """True for an ``[agent]`` option; otherwise records ``name`` as ignored."""
    if name in option_names():
        return True
    ignored.append(dataclasses.replace(closest_option(name, option_names()), source=source))
    return False


def _coerced(name: str, raw: Any, source: str) -> OptionValue:
    spec = option_spec(name)
    return coerce(name, str(spec.type), raw, source, bool(spec.metadata.get("secret")))


def _validate(config: AgentConfig, origin: Mapping[str, str]) -> None:
    """Value checks for the options limelet acts on."""
    check_uuid_option(config.uuid, origin.get("uuid", ""))
    for option in ("contact_port", "registrar_port", "port"):
        check_port(option, getattr(config, option), origin.get(option, ""))
    for option in ("contact_ip", "registrar_ip", "ip"):
        check_host(option, getattr(config, option), origin.get(option, ""))
    if config.exponential_backoff_initial_delay > config.exponential_backoff_max_delay:
        option = "exponential_backoff_initial_delay"
        reason = "larger than exponential_backoff_max_delay"
        value = repr(config.exponential_backoff_initial_delay)
        raise OptionValueError(option, value, reason, origin.get(option, ""))
    parse_api_versions(config.api_versions)
    try:
        config.tpm_config()
    except TpmConfigError as exc:
        source = origin.get(exc.option, "")
        raise OptionValueError(exc.option, repr(exc.value), exc.reason, source) from exc


def _warn_not_implemented(config: AgentConfig) -> None:
    """One warning per option that limelet ignores but that is set to a non-default value."""
    for spec in dataclasses.fields(config):
        if spec.metadata.get("implemented", True):
            continue
        value = getattr(config, spec.name)
        if value != spec.default:
            log.warning(
                "Option %s = %s is not implemented by limelet yet and is ignored",
                spec.name,
                shown(value, bool(spec.metadata.get("secret"))),
            )
