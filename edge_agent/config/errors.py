"""What loading the configuration raises.

::

    ConfigError                     base (a ValueError); ``source`` says where it came from
    ├── ConfigFileError             a file that cannot be read, is not TOML, or is too large
    ├── UnknownOptionError          a key or table that no agent.conf has (names it)
    └── OptionValueError            a known option with a value of the wrong type or range

``source`` is a file path or an environment variable name.  Values of secret options
(passwords) are never part of a message.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """The agent's configuration cannot be used."""

    def __init__(self, message: str, source: str) -> None:
        super().__init__(f"{source}: {message}" if source else message)
        self.source = source


class ConfigFileError(ConfigError):
    """A configuration file could not be read or parsed."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(reason, source)
        self.reason = reason


class UnknownOptionError(ConfigError):
    """A key that is not an ``[agent]`` option (often a misspelling), or a foreign table."""

    def __init__(self, option: str, source: str, hint: str = "") -> None:
        text = f"unknown option {option!r}" + (f" (did you mean {hint!r}?)" if hint else "")
        super().__init__(text, source)
        self.option = option


class OptionValueError(ConfigError):
    """A known option has a value the agent cannot use."""

    def __init__(self, option: str, shown_value: str, reason: str, source: str) -> None:
        super().__init__(f"option {option} = {shown_value}: {reason}", source)
        self.option = option
        self.reason = reason
