"""The tenant's measured-boot mask and the log replay share one PCR set, Keylime's."""

from __future__ import annotations

from attest_protocol.eventlog import BOOT_PCRS
from attest_protocol.keylime_facts import IMA_PCR
from tenant_lite.policy import MEASUREDBOOT_PCRS

# keylime/config.py (7.14.3) MEASUREDBOOT_PCRS, written out so a change on our side shows.
KEYLIME_MEASUREDBOOT_PCRS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15)


def test_tenant_mask_pcrs_are_keylimes() -> None:
    assert MEASUREDBOOT_PCRS == KEYLIME_MEASUREDBOOT_PCRS


def test_replay_set_is_the_tenant_set_without_ima() -> None:
    assert frozenset(MEASUREDBOOT_PCRS) == BOOT_PCRS
    assert IMA_PCR not in BOOT_PCRS
