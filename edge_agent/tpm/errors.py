"""What the TPM layer raises.

::

    TpmError                        base of everything below
    ├── TpmConfigError              a tpm_* option has a value we cannot use (names the option)
    ├── TctiError                   the TCTI string is invalid or no TPM answers there
    ├── TpmCommandError             a TPM command failed: names what we were doing and the rc
    ├── EkCertificateMissing        no EK certificate at the NV index (names the index)
    ├── AkMismatch                  the stored AK does not fit this EK or configuration
    ├── AkNotLoaded                 the TPM could not load the stored AK now (kept, not replaced)
    ├── TpmUnavailable              the TPM connection failed and is being reopened (answer 503)
    └── PcrsKeptChanging            PCRs changed between quote and read on every attempt

Every tpm2-pytss exception is wrapped with ``from`` into one of these, together with the
operation that failed, so a log line says "creating the AK under the EK" rather than a bare
TSS2 return code.  Messages carry handles, indexes and return codes, never key material,
credentials or secrets.
"""

from __future__ import annotations

from typing import Optional


class TpmError(Exception):
    """Base of everything the TPM layer raises."""


class TpmConfigError(TpmError, ValueError):
    """A TPM option has a value the agent cannot use; ``option`` names the agent.conf key."""

    def __init__(self, option: str, value: object, reason: str) -> None:
        super().__init__(f"{option} = {value!r}: {reason}")
        self.option = option
        self.value = value
        self.reason = reason


class TctiError(TpmError):
    """The TCTI could not be loaded, or nothing answered TPM commands through it."""

    def __init__(self, tcti: str, reason: str) -> None:
        super().__init__(f"cannot use TPM through TCTI {tcti!r}: {reason}")
        self.tcti = tcti
        self.reason = reason


class TpmCommandError(TpmError):
    """A TPM command failed.  ``operation`` says what for; ``rc`` is the TSS2 return code,
    None when the TPM answered but not with what was asked."""

    def __init__(self, operation: str, rc: Optional[int], detail: str) -> None:
        code = "" if rc is None else f" (rc {rc:#x})"
        super().__init__(f"TPM failed while {operation}: {detail}{code}")
        self.operation = operation
        self.rc = rc
        self.detail = detail


class EkCertificateMissing(TpmError):
    """The TPM holds no EK certificate in the NV index that matches the EK's template."""

    def __init__(self, nv_index: int, what: str) -> None:
        super().__init__(
            f"no EK certificate for the {what} EK: NV index {nv_index:#010x} is not defined"
        )
        self.nv_index = nv_index


class AkMismatch(TpmError):
    """The persisted AK cannot be used: other algorithms, another EK, or an unreadable file.

    ``Tpm.ak()`` catches this, logs ``reason`` and creates a new AK (as rust-keylime does with
    its ``agent_data.json``, keylime-agent/src/main.rs).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"stored AK not usable: {reason}")
        self.reason = reason


class PcrsKeptChanging(TpmError):
    """The PCRs read after each quote never matched the quote's pcrDigest."""

    def __init__(self, attempts: int) -> None:
        super().__init__(
            f"PCR values changed between TPM2_Quote and TPM2_PCR_Read on all {attempts} attempts"
        )
        self.attempts = attempts


class AkNotLoaded(TpmError):
    """TPM2_Load of the stored AK failed for a reason that is not the blob's fault.

    A resource, transport or retryable error (edge_agent.tpm.rc.is_transient, or anything the
    TPM did not definitively reject): the file is kept, since a new AK would make the registrar
    refuse this agent until an operator deletes its record.
    """

    def __init__(self, path: object, cause: TpmCommandError) -> None:
        super().__init__(
            f"the TPM could not load the stored AK in {path} now ({cause}); the AK is kept, "
            "not replaced: start the agent again once the TPM is available"
        )
        self.rc = cause.rc


class TpmUnavailable(TpmError):
    """The TPM connection broke; the backend reopens it with backoff.  Callers answer 503."""

    def __init__(self, reason: str, retry_in: float) -> None:
        super().__init__(f"the TPM is unavailable: {reason}")
        self.reason = reason
        self.retry_in = retry_in
