"""The tenant's ``tpm_policy`` and the PCR mask the verifier asks the agent for.

``tpm_policy`` is a JSON object of PCR number -> accepted hex values, plus Keylime's
``"mask"`` (keylime/tpm/tpm_util.py ``readPolicy`` on the tenant side); the verifier asks for
that mask (Keylime ``prepare_get_quote``) and for whatever else its checks need.
"""

from __future__ import annotations

import json

from attest_protocol.errors import ParseError
from attest_protocol.keylime_facts import DATA_PCR, IMA_PCR
from attest_protocol.tpm2.pcr import parse_mask
from verifier_lite.measured_boot import MB_PCRS

MAX_PCR = 23


def parse_tpm_policy(text: str) -> dict[int, tuple[str, ...]]:
    """``{"16": ["ab..."], "mask": "0x..."}`` -> ``{16: ("ab...",)}``; ValueError names why."""
    try:
        policy = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg}") from None
    if not isinstance(policy, dict):
        raise ValueError("not a JSON object")
    out: dict[int, tuple[str, ...]] = {}
    for key, value in policy.items():
        if key == "mask":
            continue
        if not (isinstance(key, str) and key.isdigit() and 0 <= int(key) <= MAX_PCR):
            raise ValueError(f"key {key[:16]!r} is not a PCR number")
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError(f"PCR {key}: expected a list of hex strings")
        out[int(key)] = tuple(v.lower() for v in values)
    return out


def quote_mask(tpm_policy_text: str, *, with_ima: bool, with_mb: bool = False) -> str:
    """The ``mask`` to ask for: the tenant's ``tpm_policy["mask"]`` when it sent one (Keylime
    ``prepare_get_quote``), and the listed PCRs; PCR 16 always, PCR 10 with a runtime policy,
    the boot PCRs 0-9 with a measured-boot policy."""
    try:
        policy = json.loads(tpm_policy_text) if tpm_policy_text else {}
    except json.JSONDecodeError:
        policy = {}
    mask = 0
    given = policy.get("mask") if isinstance(policy, dict) else None
    if isinstance(given, str):
        try:
            mask = parse_mask(given)
        except ParseError:
            mask = 0
    for pcr in parse_tpm_policy(tpm_policy_text) if tpm_policy_text else {}:
        mask |= 1 << pcr
    mask |= 1 << DATA_PCR
    if with_ima:
        mask |= 1 << IMA_PCR
    if with_mb:
        for pcr in MB_PCRS:
            mask |= 1 << pcr
    return hex(mask)
