"""TPM options, with rust-keylime's names, values and defaults.

rust-keylime reads ``tpm_encryption_alg``, ``tpm_hash_alg``, ``tpm_signing_alg`` and
``ek_handle`` from agent.conf (keylime/src/config/base.rs) and the TCTI only from the ``TCTI``
environment variable (keylime/src/tpm.rs, ``Context::new``).  We read the same variable first,
then an optional ``tcti`` option, then fall back to the kernel resource manager.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from edge_agent.tpm.errors import TpmConfigError
from edge_agent.tpm.owner_auth import parse_owner_password

__all__ = [
    "DEFAULT_TCTI",
    "TCTI_ENV_VAR",
    "TpmConfig",
    "parse_ek_handle",
    "resolve_tcti",
]

TCTI_ENV_VAR = "TCTI"
DEFAULT_TCTI = "device:/dev/tpmrm0"
DEFAULT_ENCRYPTION_ALG = "rsa"
DEFAULT_HASH_ALG = "sha256"
DEFAULT_SIGNING_ALG = "rsassa"
DEFAULT_DATA_DIR = Path("/var/lib/keylime")
# The AK file: rust-keylime's agent_data.json (edge_agent.tpm.agent_data), and the one an
# earlier limelet release wrote, read once and carried over.
AK_FILE_NAME = "agent_data.json"
LEGACY_AK_FILE_NAME = "limelet_ak.json"
# TCTIs that talk to a TPM emulator: the agent warns loudly when it uses one (rule 6).
SOFTWARE_TCTIS = frozenset({"swtpm", "mssim"})
# ek_handle values that mean "create the EK from the default template" (config/base.rs).
EK_HANDLE_GENERATE = frozenset({"", "generate"})
# TPM2_HT_PERSISTENT (TCG TPM 2.0 Part 2 §7.2): persistent object handles are 0x81xxxxxx.
PERSISTENT_HANDLE_FIRST = 0x81000000
PERSISTENT_HANDLE_LAST = 0x81FFFFFF

# Keylime's names (keylime/src/algorithms.rs): "rsa" means RSA-2048 and "ecc" NIST P-256, the
# two low-range templates of the TCG EK Credential Profile; we accept their long spellings too.
_ENCRYPTION_ALGS = {
    "rsa": "rsa",
    "rsa2048": "rsa",
    "ecc": "ecc",
    "ecc256": "ecc",
    "ecc_nist_p256": "ecc",
}
_HASH_ALGS = frozenset({"sha1", "sha256", "sha384", "sha512"})
# The AK's signature scheme must suit its key type: RSASSA for RSA AKs, ECDSA for ECC AKs.
_SIGNING_ALG_KEY = {"rsassa": "rsa", "ecdsa": "ecc"}


def resolve_tcti(configured: Optional[str], environ: Mapping[str, str] = os.environ) -> str:
    """The ``TCTI`` environment variable if set and not empty, else ``configured``, else default."""
    from_env = environ.get(TCTI_ENV_VAR, "")
    if from_env:
        return from_env
    return configured or DEFAULT_TCTI


def parse_ek_handle(value: str) -> Optional[int]:
    """agent.conf ``ek_handle``: "generate" or "" -> None, else a hex persistent handle."""
    text = value.strip()
    if text.lower() in EK_HANDLE_GENERATE:
        return None
    try:
        handle = int(text, 16)
    except ValueError:
        raise TpmConfigError("ek_handle", value, "not a hex handle such as 0x81010001") from None
    return handle


@dataclass(frozen=True)
class TpmConfig:
    """Frozen TPM settings.  Build it with :meth:`from_options` from agent.conf values."""

    tcti: str = DEFAULT_TCTI
    ek_handle: Optional[int] = None
    encryption_alg: str = DEFAULT_ENCRYPTION_ALG
    hash_alg: str = DEFAULT_HASH_ALG
    signing_alg: str = DEFAULT_SIGNING_ALG
    data_dir: Path = field(default=DEFAULT_DATA_DIR)
    # agent.conf ``agent_data_path`` resolved against data_dir; None means the default file.
    agent_data_path: Optional[Path] = None
    # agent.conf ``tpm_ownerpassword`` as bytes (edge_agent.tpm.owner_auth); never printed.
    endorsement_auth: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        encryption = _ENCRYPTION_ALGS.get(self.encryption_alg)
        if encryption is None:
            allowed = ", ".join(sorted(_ENCRYPTION_ALGS))
            raise TpmConfigError("tpm_encryption_alg", self.encryption_alg, f"use one of {allowed}")
        object.__setattr__(self, "encryption_alg", encryption)
        if self.hash_alg not in _HASH_ALGS:
            allowed = ", ".join(sorted(_HASH_ALGS))
            raise TpmConfigError("tpm_hash_alg", self.hash_alg, f"use one of {allowed}")
        key = _SIGNING_ALG_KEY.get(self.signing_alg)
        if key is None:
            allowed = ", ".join(sorted(_SIGNING_ALG_KEY))
            raise TpmConfigError("tpm_signing_alg", self.signing_alg, f"use one of {allowed}")
        if key != encryption:
            reason = f"needs tpm_encryption_alg = {key!r}, not {self.encryption_alg!r}"
            raise TpmConfigError("tpm_signing_alg", self.signing_alg, reason)
        handle = self.ek_handle
        if handle is not None and not PERSISTENT_HANDLE_FIRST <= handle <= PERSISTENT_HANDLE_LAST:
            raise TpmConfigError("ek_handle", f"{handle:#x}", "not a persistent handle 0x81xxxxxx")
        if not self.tcti:
            raise TpmConfigError("tcti", self.tcti, "empty")

    @classmethod
    def from_options(
        cls,
        *,
        tcti: Optional[str] = None,
        ek_handle: str = "generate",
        tpm_encryption_alg: str = DEFAULT_ENCRYPTION_ALG,
        tpm_hash_alg: str = DEFAULT_HASH_ALG,
        tpm_signing_alg: str = DEFAULT_SIGNING_ALG,
        data_dir: Path = DEFAULT_DATA_DIR,
        agent_data_path: Optional[Path] = None,
        tpm_ownerpassword: str = "",
        environ: Mapping[str, str] = os.environ,
    ) -> TpmConfig:
        """Build from agent.conf strings, applying the ``TCTI`` environment variable."""
        return cls(
            tcti=resolve_tcti(tcti, environ),
            ek_handle=parse_ek_handle(ek_handle),
            encryption_alg=tpm_encryption_alg,
            hash_alg=tpm_hash_alg,
            signing_alg=tpm_signing_alg,
            data_dir=data_dir,
            agent_data_path=agent_data_path,
            endorsement_auth=parse_owner_password(tpm_ownerpassword),
        )

    @property
    def ak_path(self) -> Path:
        """Where the AK is persisted: rust-keylime's ``agent_data_path``."""
        return self.agent_data_path or self.data_dir / AK_FILE_NAME

    @property
    def legacy_ak_path(self) -> Path:
        """The AK file of limelet releases before the agent_data.json format."""
        return self.data_dir / LEGACY_AK_FILE_NAME

    @property
    def is_software_tpm(self) -> bool:
        """True for the swtpm and mssim (TPM simulator) TCTIs."""
        return self.tcti.split(":", 1)[0] in SOFTWARE_TCTIS
