"""Keys in agent.conf that the agent does not use: warned about once each, fatal with --strict.

rust-keylime 0.2.9 ignores keys it does not know (serde without ``deny_unknown_fields``,
keylime/src/config/base.rs), so an agent.conf it starts with may hold two kinds of them:

* keys that Keylime's own configuration templates write into ``[agent]`` but no agent reads
  any more (keylime templates/2.x/agent.j2 at v7.14.3: ``tls_dir`` and the Python agent's
  retry options);
* keys unknown to both agents -- often a misspelling, which would silently keep a default.

Both are reported, each with the closest known option, instead of stopping the agent:
swapping agent packages on a device must not fail on a config the other agent accepted.
``load_config(strict=True)`` (``limelet-agent --strict``) turns them back into errors.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from edge_agent.config.errors import UnknownOptionError

__all__ = ["TEMPLATE_ONLY_OPTIONS", "IgnoredOption", "closest_option", "report"]

log = logging.getLogger(__name__)

# Keylime-template keys no agent reads, with the option that now does the job.
TEMPLATE_ONLY_OPTIONS = {
    "tls_dir": "server_cert",  # the Python agent's certificate directory
    "max_retries": "exponential_backoff_max_retries",
    "retry_interval": "exponential_backoff_initial_delay",
    "exponential_backoff": "exponential_backoff_max_delay",
    "measure_payload_pcr": "",  # the Python agent extended a PCR with the payload; none now
}
# difflib's similarity floor for a spelling suggestion (its own default).
SUGGESTION_CUTOFF = 0.6


@dataclass(frozen=True)
class IgnoredOption:
    """A key that was read and not used: where it was, and what it may have meant."""

    name: str
    source: str
    hint: str
    from_template: bool

    def describe(self) -> str:
        what = (
            "written by Keylime's templates but not used by the agent"
            if self.from_template
            else "unknown"
        )
        closest = f"; closest known option: {self.hint}" if self.hint else ""
        return f"{self.source}: option {self.name!r} is {what} and is ignored{closest}"


def closest_option(name: str, known: Iterable[str]) -> IgnoredOption:
    """The report for ``name`` (source filled in by the caller with ``dataclasses.replace``)."""
    if name in TEMPLATE_ONLY_OPTIONS:
        return IgnoredOption(name, "", TEMPLATE_ONLY_OPTIONS[name], True)
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=SUGGESTION_CUTOFF)
    return IgnoredOption(name, "", close[0] if close else "", False)


def report(ignored: Iterable[IgnoredOption], *, strict: bool) -> None:
    """One warning per ignored key (the same key from two files warns twice: both are wrong).

    With ``strict``, the first one is an UnknownOptionError naming it and its source.
    """
    for item in ignored:
        if strict:
            raise UnknownOptionError(item.name, item.source, item.hint)
        log.warning("%s", item.describe())
