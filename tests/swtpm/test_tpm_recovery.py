"""The stored AK survives TPM errors that are not the blob's fault; leftovers are flushed.

Only a definitive rejection by TPM2_Load (test_tpm_ak.py: a broken integrity HMAC) replaces
the AK.  Here the TPM's object slots are full when the AK is loaded (TPM_RC_OBJECT_MEMORY):
start-up must fail with a message saying the AK is kept, and the file must not change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tpm2_pytss import ESYS_TR, TPM2B_PUBLIC, TPM2B_SENSITIVE_CREATE, TSS2_Exception

from edge_agent.tpm import AkNotLoaded
from edge_agent.tpm.config import AK_FILE_NAME
from edge_agent.tpm.pytss_sync import EsysTpm
from edge_agent.tpm.rc import is_transient
from tests.swtpm.support import config, opened
from tools.swtpm import Swtpm

pytestmark = pytest.mark.swtpm

# swtpm (libtpms) has 3 transient object slots; a few more attempts prove we filled them.
FILL_ATTEMPTS = 8


def fill_object_slots(esys: Any) -> int:
    """Load primary keys until the TPM has no transient slot left; how many it took."""
    template = TPM2B_PUBLIC.parse("ecc256")
    for loaded in range(FILL_ATTEMPTS):
        try:
            esys.create_primary(TPM2B_SENSITIVE_CREATE(), template, ESYS_TR.OWNER)
        except TSS2_Exception as exc:
            assert is_transient(int(exc.rc)), exc
            return loaded
    raise AssertionError(f"the TPM took {FILL_ATTEMPTS} objects without running out")


async def test_a_resource_error_keeps_the_stored_ak(swtpm: Swtpm, tmp_path: Path) -> None:
    cfg = config(swtpm.tcti, tmp_path)
    async with opened(cfg) as tpm:
        first = await tpm.ak()
    ak_file = tmp_path / AK_FILE_NAME
    before = ak_file.read_bytes()
    sync = EsysTpm.open(cfg)
    try:
        sync.ek()
        assert fill_object_slots(sync._esys) >= 1
        with pytest.raises(AkNotLoaded, match="the AK is kept, not replaced") as caught:
            sync.ak()
    finally:
        sync.close()
    assert caught.value.rc is not None and is_transient(caught.value.rc)
    assert ak_file.read_bytes() == before
    # Opening again flushes what the failed run left loaded, and the same AK comes back.
    async with opened(cfg) as tpm:
        again = await tpm.ak()
    assert not again.created and again.name == first.name
