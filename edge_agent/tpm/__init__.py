"""The agent's TPM: a ``Tpm`` Protocol and its tpm2-pytss backend.

``protocol``       the Protocol and the frozen values it returns (EkInfo, AkInfo)
``config``         TpmConfig: TCTI, EK handle, algorithms, data dir (rust-keylime's options)
``errors``         the exception tree (TpmError and below)
``templates``      EK (TCG EK Credential Profile) and AK templates, EK certificate NV indexes
``agent_data``     the AK persisted between runs, in rust-keylime's agent_data.json format
``ak_store``       the AK file of earlier limelet releases, read once and carried over
``owner_auth``     tpm_ownerpassword: the endorsement hierarchy's authorization value
``esys_ops``       blocking ESAPI commands, bytes in and out
``rc``             which TSS2 return codes are transient, which reject a stored blob
``pytss_sync``     EsysTpm: the operations over one ESAPI context (blocking)
``pytss_backend``  PytssTpm: the async backend (worker thread, one-slot limiter)
``early``          EarlyTpm: the TPM opened while the agent imports the rest (cli.main)

Backends are imported where the daemon chooses one, so importing this package does not load
tpm2-pytss.
"""

from __future__ import annotations

from edge_agent.tpm.config import TpmConfig
from edge_agent.tpm.errors import (
    AkMismatch,
    AkNotLoaded,
    EkCertificateMissing,
    PcrsKeptChanging,
    TctiError,
    TpmCommandError,
    TpmConfigError,
    TpmError,
    TpmUnavailable,
)
from edge_agent.tpm.protocol import AkInfo, EkInfo, Tpm

__all__ = [
    "AkInfo",
    "AkMismatch",
    "AkNotLoaded",
    "EkCertificateMissing",
    "EkInfo",
    "PcrsKeptChanging",
    "TctiError",
    "Tpm",
    "TpmCommandError",
    "TpmConfig",
    "TpmConfigError",
    "TpmError",
    "TpmUnavailable",
]
