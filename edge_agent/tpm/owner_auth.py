"""``tpm_ownerpassword``: the endorsement hierarchy's authorization value.

rust-keylime 0.2.9 (keylime-agent/src/main.rs) sets it on the ESAPI context's endorsement
hierarchy before creating the EK, so a TPM whose endorsement hierarchy has a password (set
with ``tpm2_changeauth -c e``) works; a value starting with ``hex:`` is the password's bytes
in hex, any other value its UTF-8 bytes, and "" means no password.  The AK's PolicySecret
(TPM_RH_ENDORSEMENT) session needs the same value, which ESAPI takes from the same handle.

The value is a secret: errors name the option, never the value.
"""

from __future__ import annotations

import binascii
from typing import Any

from edge_agent.tpm.errors import TpmConfigError

__all__ = ["HEX_PREFIX", "apply_endorsement_auth", "parse_owner_password"]

HEX_PREFIX = "hex:"
OPTION = "tpm_ownerpassword"
# TPM2B_AUTH holds at most one digest of the TPM's largest hash (SHA-512 here: 64 bytes,
# TCG TPM 2.0 Part 2 §10.4.5); longer values would only fail later inside the TPM.
MAX_AUTH_BYTES = 64
_HIDDEN = "<hidden>"


def parse_owner_password(value: str) -> bytes:
    """The authorization bytes of an agent.conf ``tpm_ownerpassword``."""
    if value.startswith(HEX_PREFIX):
        try:
            auth = binascii.unhexlify(value[len(HEX_PREFIX) :])
        except (binascii.Error, ValueError):
            raise TpmConfigError(OPTION, _HIDDEN, "hex: is not followed by hex digits") from None
    else:
        auth = value.encode("utf-8")
    if len(auth) > MAX_AUTH_BYTES:
        raise TpmConfigError(OPTION, _HIDDEN, f"longer than {MAX_AUTH_BYTES} bytes")
    return auth


def apply_endorsement_auth(esys: Any, auth: bytes) -> None:
    """Give ``esys`` the endorsement hierarchy's password (nothing to do for none)."""
    if not auth:
        return
    from tpm2_pytss import ESYS_TR, TPM2B_AUTH  # the backend's import, only when needed

    esys.tr_set_auth(ESYS_TR.ENDORSEMENT, TPM2B_AUTH(auth))
