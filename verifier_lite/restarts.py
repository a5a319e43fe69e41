"""When the engine's supervisor restarts a polling task, and after how long.

A task ends early for two reasons (engine.py ``_supervise``):

* the store could not be used (:class:`~verifier_lite.store_health.StoreUnavailableError`):
  not the agent's fault, so the task is restarted for as long as it takes, waiting
  ``retry_interval`` doubled per failure but never more than one ``quote_interval``, so
  polling resumes within one interval of the store's recovery;
* anything else (a bug, a library surprise): restarted after ``retry_delay`` like a contact
  failure, and after ``max_retries`` such restarts the agent is FAILED, as Keylime fails an
  agent it cannot reach (cloud_verifier_tornado.py ``invoke_get_quote`` retry handling).

Each restart begins with a full quote (the NK key, clock and IMA position are rebuilt), so an
outage never lets a partial quote stand for one that was not checked.
"""

from __future__ import annotations

from typing import Optional

from verifier_lite.poller import EngineSettings, retry_delay


class RestartPolicy:
    def __init__(self, settings: EngineSettings) -> None:
        self._settings = settings
        self.crashes = 0
        self.store_failures = 0

    def after_store_failure(self) -> float:
        """Seconds to wait before the next attempt; there is always one."""
        self.store_failures += 1
        exponent = min(self.store_failures - 1, 30)  # 2**30 intervals exceeds any cap
        wait = self._settings.retry_interval * 2**exponent
        return float(min(wait, self._settings.quote_interval))

    def after_crash(self) -> Optional[float]:
        """Seconds before restarting, or None once ``max_retries`` restarts are used up."""
        self.crashes += 1
        if self.crashes > self._settings.max_retries:
            return None
        return retry_delay(self._settings, self.crashes)
