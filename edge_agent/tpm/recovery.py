"""When the TPM connection is given up and reopened, and how soon it is tried again.

A TCTI that lost its socket, an ESAPI context left "called in bad sequence" by such a loss,
or a TPM out of object slots does not heal by itself inside one context: the backend
(pytss_backend.PytssTpm) closes it and opens another.  :class:`Backoff` spaces the attempts
so a TPM that is really gone costs a few reconnects a minute, not one per request; the quotes
asked for in between answer TpmUnavailable (503) at once.

Pure: times are numbers the caller reads from its clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.tpm import rc
from edge_agent.tpm.errors import AkNotLoaded, TctiError, TpmCommandError, TpmError, TpmUnavailable

__all__ = [
    "BACKOFF_INITIAL_SECONDS",
    "BACKOFF_MAX_SECONDS",
    "OPERATION_ATTEMPTS",
    "Backoff",
    "is_transient_error",
]

# One try on the context we have, one on a fresh one: a swtpm or resource manager restart
# between two quotes then costs the verifier nothing.
OPERATION_ATTEMPTS = 2
# After the second failure in a row, wait this long before reconnecting, doubling up to the max
# (a Keylime verifier polls every quote_interval, 2 s by default, so the agent is back within
# one or two polls once the TPM answers again).
BACKOFF_INITIAL_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0


def is_transient_error(exc: TpmError) -> bool:
    """Whether ``exc`` is a transport or resource failure that a new context may cure."""
    if isinstance(exc, (TctiError, TpmUnavailable)):
        return True
    if isinstance(exc, (TpmCommandError, AkNotLoaded)):
        return rc.is_transient(exc.rc)
    return False


@dataclass
class Backoff:
    """Consecutive failures and the earliest time of the next reconnect."""

    failures: int = 0
    retry_at: float = 0.0
    reason: str = ""

    def failed(self, now: float, reason: str) -> None:
        """The first failure allows an immediate reconnect; later ones wait, doubling."""
        self.failures += 1
        self.reason = reason
        exponent = self.failures - 2
        delay = 0.0 if exponent < 0 else BACKOFF_INITIAL_SECONDS * 2.0**exponent
        self.retry_at = now + min(delay, BACKOFF_MAX_SECONDS)

    def succeeded(self) -> None:
        self.failures, self.retry_at, self.reason = 0, 0.0, ""

    def may_retry(self, now: float) -> bool:
        return now >= self.retry_at

    def unavailable(self, now: float) -> TpmUnavailable:
        return TpmUnavailable(self.reason or "no TPM connection", max(0.0, self.retry_at - now))
