"""Which TSS2 return codes reopen the TPM context, which replace the AK, and the backoff."""

from __future__ import annotations

import pytest

from edge_agent.tpm.errors import AkMismatch, TctiError, TpmCommandError
from edge_agent.tpm.rc import is_transient, rejects_blob
from edge_agent.tpm.recovery import (
    BACKOFF_INITIAL_SECONDS,
    BACKOFF_MAX_SECONDS,
    Backoff,
    is_transient_error,
)

TCTI_IO_ERROR = 0xA000A
ESYS_BAD_SEQUENCE = 0x70007
ESYS_BAD_VALUE = 0x7000B
OBJECT_MEMORY = 0x902
RETRY = 0x922
# TPM_RC_INTEGRITY for parameter 1 and handle 1; TPM_RC_BINDING; TPM_RC_TYPE (handle 1).
INTEGRITY_P1 = 0x1DF
INTEGRITY_H1 = 0x19F
BINDING = 0x0A5
TYPE_H1 = 0x18A
AUTH_FAIL = 0x98E  # bad authorisation: neither transient nor the blob's fault


@pytest.mark.parametrize("rc", [TCTI_IO_ERROR, ESYS_BAD_SEQUENCE, OBJECT_MEMORY, RETRY, 0xB0902])
def test_transport_and_resource_codes_are_transient(rc: int) -> None:
    assert is_transient(rc)
    assert not rejects_blob(rc)


@pytest.mark.parametrize("rc", [INTEGRITY_P1, INTEGRITY_H1, BINDING, TYPE_H1])
def test_load_rejections_replace_the_blob(rc: int) -> None:
    assert rejects_blob(rc)
    assert not is_transient(rc)


@pytest.mark.parametrize("rc", [None, ESYS_BAD_VALUE, AUTH_FAIL])
def test_other_codes_are_neither(rc: int | None) -> None:
    assert not is_transient(rc)
    assert not rejects_blob(rc)


def test_which_errors_reopen_the_context() -> None:
    assert is_transient_error(TctiError("swtpm:", "refused"))
    assert is_transient_error(TpmCommandError("quoting", TCTI_IO_ERROR, "io"))
    assert not is_transient_error(TpmCommandError("reading PCRs", None, "bank missing"))
    assert not is_transient_error(AkMismatch("another EK"))


def test_backoff_first_retry_at_once_then_doubling_to_the_max() -> None:
    backoff = Backoff()
    backoff.failed(100.0, "io")
    assert backoff.may_retry(100.0)
    backoff.failed(100.0, "io")
    assert not backoff.may_retry(100.0)
    assert backoff.may_retry(100.0 + BACKOFF_INITIAL_SECONDS)
    for _ in range(20):
        backoff.failed(100.0, "io")
    assert backoff.retry_at == 100.0 + BACKOFF_MAX_SECONDS
    unavailable = backoff.unavailable(100.0)
    assert unavailable.reason == "io" and unavailable.retry_in == BACKOFF_MAX_SECONDS
    backoff.succeeded()
    assert backoff.may_retry(0.0) and backoff.failures == 0
