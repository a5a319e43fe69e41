"""Per-agent IMA signature verification keys (``ima_sign_verification_keys``).

The tenant's ``--sign_verification_key`` files reach the verifier as one keyring string in
the add request (Keylime's ``ImaKeyring.to_string``: ``{"meta": ..., "keyids": [...],
"pubkeys": [base64 DER, ...]}``).  Keylime 7.14.3 (keylime/cloud_verifier_common.py
``process_quote_response``) checks ima-sig entries with the agent's keyring when it has one
and with the runtime policy's ``verification-keys`` otherwise - the agent's keys replace
the policy's, they are not added to them - plus, in both cases, the keys the log itself
loaded into allowed keyrings.  We do the same.
"""

from __future__ import annotations

import dataclasses

from attest_protocol.errors import AttestProtocolError
from attest_protocol.policy import RuntimePolicy
from attest_protocol.policy.model import load_verification_keys
from verifier_lite.errors import RequestError

FIELD = "ima_sign_verification_keys"
# keylime/ima/file_signatures.py ImaKeyring.from_string: these mean "no keyring".
_NO_KEYRING = ("null", "[]")
# Keylime's column is a String(1000) in old schemas and Text now; a bound keeps it sane.
MAX_CHARS = 1024 * 1024


def check_agent_keys(text: str) -> str:
    """The request's keyring string, refused (400, naming the field) when unusable."""
    if len(text) > MAX_CHARS:
        raise RequestError(FIELD, f"must be at most {MAX_CHARS} characters")
    if text.strip() in _NO_KEYRING:
        return text
    try:
        load_verification_keys(text)
    except (AttestProtocolError, ValueError) as exc:
        raise RequestError(FIELD, str(exc)[:200]) from None
    return text


def with_agent_keys(policy: RuntimePolicy, text: str) -> RuntimePolicy:
    """``policy`` with the agent's keyring in place of its own, when the agent has one."""
    if not text:
        return policy
    keys = {} if text.strip() in _NO_KEYRING else load_verification_keys(text)
    return dataclasses.replace(policy, verification_keys=keys)
