"""The payload script (``payload_script``, default ``autorun.sh``) and the policy that gates it.

rust-keylime (keylime-agent/src/main.rs) refuses to start when a payload script is
configured, mTLS is off and ``enable_insecure_payload`` is not set: without mTLS anyone who
can reach the agent could deliver a script that runs as the agent's user.
``check_payload_policy`` is that start-up check; ``run_payload_script`` runs the script only
when the caller says payloads are allowed (mTLS on, or enable_insecure_payload).

Like rust-keylime the script is made 0700 and run from the unzipped directory; it is started
through ``/bin/sh -c 'exec "$0"' <path>`` so a ``#!`` line is honoured and a script without
one is still run by sh, with no shell parsing of the path.  Its environment carries
``AGENT_UUID`` when given, as Keylime's Python agent set it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

from edge_agent.payload.errors import PayloadPolicyError, PayloadScriptError
from edge_agent.payload.process import ProgramTimeout, run_logged

__all__ = [
    "PAYLOAD_SCRIPT_TIMEOUT_SECONDS",
    "check_payload_policy",
    "run_payload_script",
]

log = logging.getLogger(__name__)

# rust-keylime waits without a bound; a hung script must not pin the payload worker forever.
# Five minutes is generous for set-up work on a small device.
PAYLOAD_SCRIPT_TIMEOUT_SECONDS = 300.0
_SCRIPT_MODE = 0o700
_SHELL = "/bin/sh"
# Variables passed to the script; the agent's own environment may hold secrets.
_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")


def check_payload_policy(
    payload_script: str, enable_agent_mtls: bool, enable_insecure_payload: bool
) -> None:
    """Raise PayloadPolicyError when a payload script could arrive over plain HTTP."""
    if payload_script and not enable_agent_mtls and not enable_insecure_payload:
        raise PayloadPolicyError(
            "agent mTLS is disabled and payload_script is set; set enable_insecure_payload "
            '= true to allow that, or payload_script = "" to disable payload scripts'
        )


async def run_payload_script(
    unzipped: Path,
    payload_script: str,
    *,
    allowed: bool,
    agent_uuid: Optional[str] = None,
    timeout_s: float = PAYLOAD_SCRIPT_TIMEOUT_SECONDS,
) -> Optional[int]:
    """Run ``unzipped/payload_script``; its exit status, or None when not run.

    Not run when ``allowed`` is False, when ``payload_script`` is empty, or when the payload
    has no such file.  Raises PayloadScriptError when it cannot be started or runs past
    ``timeout_s`` (it is then stopped).
    """
    if not payload_script:
        return None
    if not allowed:
        log.warning("payload script not run: agent mTLS is off and insecure payloads are off")
        return None
    if "/" in payload_script or payload_script in (".", ".."):
        raise PayloadPolicyError(f"payload_script must be a file name, got {payload_script!r}")
    script = unzipped / payload_script
    if not script.is_file() or script.is_symlink():
        log.info("no payload script %s in the payload", payload_script)
        return None
    env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
    if agent_uuid is not None:
        env["AGENT_UUID"] = agent_uuid
    log.info("running payload script %s", script)
    try:
        os.chmod(script, _SCRIPT_MODE)
        status = await run_logged(
            [_SHELL, "-c", 'exec "$0"', str(script)],
            name=payload_script,
            cwd=unzipped,
            timeout_s=timeout_s,
            env=env,
        )
    except ProgramTimeout as exc:
        raise PayloadScriptError(str(exc)) from exc
    except OSError as exc:
        raise PayloadScriptError(f"{payload_script} could not be run: {exc.strerror}") from exc
    log.log(logging.INFO if status == 0 else logging.WARNING, "%s exited %d", script, status)
    return status
