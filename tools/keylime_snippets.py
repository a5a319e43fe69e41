"""Run short Python snippets inside real Keylime's interpreter, to check our bytes with its code.

Keylime lives in its own virtualenv (tools/keylime_venv.py) and is never imported by limelet, so
a snippet runs in a child process: the script and a JSON payload go in on stdin, the snippet
assigns a JSON-serialisable dict to ``result``, and that comes back on stdout. Anything the
snippet or Keylime prints goes to stderr, so it cannot corrupt the result.

Errors::

    KeylimeCallError                 the call did not produce a result
     ├── KeylimeSnippetError         the snippet raised (e.g. Keylime rejected a quote);
     │                               carries the exception's type name and message
     └── KeylimeRunError             the interpreter failed, timed out or printed no result;
                                     carries its stderr
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
from collections.abc import Mapping
from typing import Any

from tools.keylime_venv import keylime_python

__all__ = [
    "KeylimeCallError",
    "KeylimeRunError",
    "KeylimeSnippetError",
    "keylime_checkquote",
    "keylime_makecredential",
    "run_in_keylime",
]

# Importing keylime.tpm.tpm_util takes about a second; a snippet is small work on top.
SNIPPET_TIMEOUT_SECONDS = 60.0

# Environment variables passed from the caller to the snippet's interpreter; everything else
# (PYTHONPATH, KEYLIME_* of an outer run, ...) is left out so runs are reproducible.
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "HOME")

# Executed by Keylime's python with -I. It keeps the real stdout for the result only.
_RUNNER = """\
import json, sys, traceback
out = sys.stdout
sys.stdout = sys.stderr
envelope = json.load(sys.stdin)
namespace = {"__name__": "__limelet_snippet__", "payload": envelope["payload"]}
try:
    exec(compile(envelope["script"], "<snippet>", "exec"), namespace)
    reply = {"ok": True, "result": namespace.get("result")}
except Exception as exc:
    reply = {"ok": False, "type": type(exc).__name__, "message": str(exc),
             "traceback": traceback.format_exc()}
out.write(json.dumps(reply))
out.flush()
"""


class KeylimeCallError(Exception):
    """A snippet run in Keylime's interpreter gave no result."""


class KeylimeSnippetError(KeylimeCallError):
    """The snippet raised; ``message`` is Keylime's own error text."""

    def __init__(self, exc_type: str, message: str, traceback: str) -> None:
        super().__init__(f"{exc_type}: {message}")
        self.exc_type = exc_type
        self.message = message
        self.traceback = traceback


class KeylimeRunError(KeylimeCallError):
    """The interpreter failed or timed out, or the snippet set no dict ``result``."""

    def __init__(self, reason: str, stderr: str) -> None:
        super().__init__(f"{reason}\n--- stderr of Keylime's python ---\n{stderr}")
        self.reason = reason
        self.stderr = stderr


def run_in_keylime(
    script: str,
    payload: Mapping[str, Any],
    *,
    timeout: float = SNIPPET_TIMEOUT_SECONDS,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``script`` in Keylime's venv with ``payload`` bound to the name ``payload``.

    The script must assign a dict to ``result``. ``env`` adds variables (e.g. a running
    instance's ``KEYLIME_*`` settings); by default ``KEYLIME_DIR`` and the working directory are
    a fresh temporary directory, so Keylime writes nothing elsewhere.
    """
    envelope = json.dumps({"script": script, "payload": dict(payload)})
    with tempfile.TemporaryDirectory(prefix="limelet-kl-snippet-") as scratch:
        child_env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        child_env["KEYLIME_DIR"] = scratch
        child_env.update(env or {})
        try:
            proc = subprocess.run(
                [str(keylime_python()), "-I", "-c", _RUNNER],
                input=envelope,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=child_env,
                cwd=scratch,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
            raise KeylimeRunError(f"snippet timed out after {timeout} s", stderr) from exc
    return _parse_reply(proc)


def _parse_reply(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    if proc.returncode != 0:
        raise KeylimeRunError(f"Keylime's python exited with {proc.returncode}", proc.stderr)
    try:
        reply = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise KeylimeRunError(
            f"no JSON result on stdout: {proc.stdout[:200]!r}", proc.stderr
        ) from exc
    if not reply.get("ok"):
        raise KeylimeSnippetError(reply["type"], reply["message"], reply["traceback"])
    result = reply.get("result")
    if not isinstance(result, dict):
        raise KeylimeRunError(f"the snippet must set result to a dict, got {result!r}", proc.stderr)
    return result


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


_CHECKQUOTE = """\
import base64
from keylime.tpm import tpm_util
raw = {k: base64.b64decode(payload[k]) for k in ("aik", "sig", "quote", "pcr")}
pcrs = tpm_util.checkquote(raw["aik"], payload["nonce"], raw["sig"], raw["quote"], raw["pcr"],
                           payload["hash_alg"])
result = {"pcrs": {str(index): value for index, value in pcrs.items()}}
"""


def keylime_checkquote(
    aik_pem: bytes, nonce: str, sigblob: bytes, quoteblob: bytes, pcrblob: bytes, hash_alg: str
) -> dict[int, str]:
    """Keylime's ``tpm_util.checkquote`` on our bytes: PCR index -> hex value.

    ``aik_pem`` is the AK public key in PEM, ``sigblob`` a marshalled TPMT_SIGNATURE,
    ``quoteblob`` a TPMS_ATTEST, ``pcrblob`` tpm2-tools' pcr output format, ``hash_alg`` a name
    such as ``"sha256"``. Raises :class:`KeylimeSnippetError` carrying Keylime's message when
    Keylime rejects the quote.
    """
    payload = {
        "aik": _b64(aik_pem),
        "nonce": nonce,
        "sig": _b64(sigblob),
        "quote": _b64(quoteblob),
        "pcr": _b64(pcrblob),
        "hash_alg": hash_alg,
    }
    pcrs = run_in_keylime(_CHECKQUOTE, payload)["pcrs"]
    return {int(index): str(value) for index, value in pcrs.items()}


_MAKECREDENTIAL = """\
import base64
from keylime.tpm import tpm_util
raw = {k: base64.b64decode(payload[k]) for k in ("ek", "challenge", "name")}
blob = tpm_util.makecredential(raw["ek"], raw["challenge"], raw["name"])
result = {"blob": base64.b64encode(blob).decode("ascii")}
"""


def keylime_makecredential(ek_tpm: bytes, challenge: bytes, aik_name: bytes) -> bytes:
    """Keylime's ``tpm_util.makecredential``: the tpm2-tools credential file it sends agents.

    ``ek_tpm`` is the EK's TPM2B_PUBLIC, ``aik_name`` the AK's TPM2B_NAME contents (nameAlg
    followed by the digest). The result starts with 0xBADCC0DE and version 1, then
    TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET.
    """
    payload = {"ek": _b64(ek_tpm), "challenge": _b64(challenge), "name": _b64(aik_name)}
    return base64.b64decode(run_in_keylime(_MAKECREDENTIAL, payload)["blob"])
