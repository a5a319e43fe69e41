"""Turn the operator's policy options into the fields Keylime's verifier expects.

Rules from keylime/cli/policies.py ``process_policy`` and keylime/tpm/tpm_util.py
``readPolicy`` (7.14.3):

* ``--tpm-policy`` is a JSON object of PCR number -> digest or list of digests. PCR 16 binds
  the agent's key and PCR 10 belongs to IMA, so neither may appear; digests are lower-cased and
  a ``mask`` of the listed PCRs is added.
* A runtime policy (file or name) adds PCR 10 to the mask; a measured-boot policy adds the
  measured-boot PCRs and may not be combined with explicit values for them.

Pure functions on text and bytes; reading the files is the caller's.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Optional

from attest_protocol.eventlog import BOOT_PCRS
from attest_protocol.keylime_facts import DATA_PCR, IMA_PCR
from tenant_lite.errors import UsageError

# keylime/config.py MEASUREDBOOT_PCRS (0-9, 11-15): one definition, shared with the log replay.
MEASUREDBOOT_PCRS = tuple(sorted(BOOT_PCRS))
MAX_PCR = 23
# Keylime's readPolicy accepts up to 24; a PC TPM has PCRs 0..23 (TCG PC Client PTP §4.6).


@dataclass(frozen=True)
class AgentPolicies:
    """The policy fields of the verifier's agent record, as Keylime's tenant fills them."""

    tpm_policy: dict[str, Any]
    runtime_policy: str  # base64 of the policy JSON, "" for none
    runtime_policy_name: str
    runtime_policy_key: str  # base64 of a DSSE verification key, "" for none
    mb_policy: Optional[str]  # policy JSON text
    mb_policy_name: str
    ima_sign_verification_keys: str = ""  # Keylime's keyring string, "" for none


def parse_tpm_policy(text: Optional[str]) -> dict[str, Any]:
    """``{"0": "AB.."}`` -> ``{"0": ["ab.."], "mask": "0x1"}``; UsageError names the problem."""
    try:
        policy = json.loads(text or "{}")
    except ValueError as exc:
        raise UsageError(f"--tpm-policy is not JSON: {exc}") from exc
    if not isinstance(policy, dict):
        raise UsageError("--tpm-policy must be a JSON object of PCR number -> digests")
    out: dict[str, Any] = {}
    mask = 0
    for key, value in policy.items():
        if not key.isdigit() or int(key) > MAX_PCR:
            raise UsageError(f"--tpm-policy: {key!r} is not a PCR number 0..{MAX_PCR}")
        if int(key) in (IMA_PCR, DATA_PCR):
            use = "IMA" if int(key) == IMA_PCR else "binding the agent's key"
            raise UsageError(f"--tpm-policy may not name PCR {key}: it is used for {use}")
        digests = [value] if isinstance(value, str) else value
        if not isinstance(digests, list) or not all(isinstance(d, str) for d in digests):
            raise UsageError(f"--tpm-policy: PCR {key} needs a digest or a list of digests")
        out[key] = [d.lower() for d in digests]
        mask |= 1 << int(key)
    out["mask"] = hex(mask)
    return out


def _add_to_mask(policy: dict[str, Any], pcrs: tuple[int, ...]) -> None:
    mask = int(policy["mask"], 16)
    for pcr in pcrs:
        mask |= 1 << pcr
    policy["mask"] = hex(mask)


def runtime_policy_b64(raw: bytes, source: str) -> str:
    """Check that the policy is a JSON object and encode it as the verifier stores it."""
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"runtime policy {source} is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise UsageError(f"runtime policy {source} is not a JSON object")
    return base64.b64encode(raw).decode("ascii")


def mb_policy_text(raw: bytes, source: str) -> str:
    try:
        text = raw.decode("utf-8")
        json.loads(text)
    except ValueError as exc:
        raise UsageError(f"measured-boot policy {source} is not JSON: {exc}") from exc
    return text


def build_policies(
    *,
    tpm_policy: Optional[str],
    runtime_policy: Optional[bytes],
    runtime_policy_source: str = "",
    runtime_policy_name: Optional[str],
    mb_policy: Optional[bytes],
    mb_policy_source: str = "",
    mb_policy_name: Optional[str],
) -> AgentPolicies:
    tpm = parse_tpm_policy(tpm_policy)
    runtime = ""
    if runtime_policy is not None:
        runtime = runtime_policy_b64(runtime_policy, runtime_policy_source)
    if runtime_policy is not None or runtime_policy_name:
        _add_to_mask(tpm, (IMA_PCR,))
    mb: Optional[str] = None
    if mb_policy is not None or mb_policy_name:
        clash = [p for p in MEASUREDBOOT_PCRS if str(p) in tpm]
        if clash:
            raise UsageError(
                f"--tpm-policy names PCR {clash[0]}, which the measured-boot policy checks"
            )
        _add_to_mask(tpm, MEASUREDBOOT_PCRS)
    if mb_policy is not None:
        mb = mb_policy_text(mb_policy, mb_policy_source)
    return AgentPolicies(
        tpm_policy=tpm,
        runtime_policy=runtime,
        runtime_policy_name=runtime_policy_name or "",
        runtime_policy_key="",
        mb_policy=mb,
        mb_policy_name=mb_policy_name or "",
    )


def runtime_policy_body(raw: bytes, source: str) -> dict[str, str]:
    """The body of POST /allowlists/{name} (keylime/tenant.py ``__convert_runtime_policy``)."""
    tpm = parse_tpm_policy(None)
    _add_to_mask(tpm, (IMA_PCR,))
    return {
        "tpm_policy": json.dumps(tpm),
        "runtime_policy": runtime_policy_b64(raw, source),
        "runtime_policy_key": "",
    }
