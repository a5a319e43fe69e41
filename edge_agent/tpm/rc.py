"""What a TSS2 return code means for the agent: try again later, or the TPM said no for good.

Two questions are asked of a failed command (TCG TSS 2.0 Overview §6.1 for the layer byte;
TPM 2.0 Part 2 §6.6 for the format of TPM-layer codes):

* :func:`is_transient`: the connection or the TPM's resources failed, not the request.  The
  TCTI lost its socket or device (swtpm restarted, descriptors ran out), the ESAPI context is
  left "called in bad sequence" after such a failure, a resource manager or the TPM ran out of
  object or session slots (``TPM_RC_OBJECT_MEMORY``, often a crashed predecessor's leftovers),
  or the TPM asks to be asked again (``TPM_RC_RETRY``, ``TPM_RC_YIELDED``...).  The answer is
  to close the context, open a new one and retry later; never to replace a key.
* :func:`rejects_blob`: ``TPM2_Load`` refused the stored AK itself: its integrity value does
  not verify under this parent (``TPM_RC_INTEGRITY``, a reset EK seed), or its public and
  private parts or its type do not fit the parent (``TPM_RC_BINDING``, ``TPM_RC_TYPE``...).
  Only then is a new AK the right answer.

Pure: integers in, booleans out.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["is_transient", "rejects_blob"]

LAYER_SHIFT = 16
LAYER_MASK = 0xFF
TPM_LAYER = 0
SYS_LAYER = 8
ESYS_LAYER = 7
TCTI_LAYER = 10
RESMGR_LAYER = 11
RESMGR_TPM_LAYER = 12
# TSS2_BASE_RC_* that mean "the transport or the context failed" in the SYS/ESYS layers
# (tss2_common.h): GENERAL_FAILURE, BAD_SEQUENCE, NO_CONNECTION, TRY_AGAIN, IO_ERROR,
# MALFORMED_RESPONSE, INSUFFICIENT_RESPONSE, MEMORY.
_TRANSIENT_BASE_CODES = frozenset({1, 7, 8, 9, 10, 17, 19, 23})
# TPM-layer format-0 codes: TPM_RC_INITIALIZE (not started yet), and the warnings
# (TPM_RC_WARN + n) that say "resources or timing, ask again" (Part 2 §6.6.3).
TPM_RC_INITIALIZE = 0x100
TPM_RC_WARN = 0x900
_TRANSIENT_WARNINGS = frozenset(
    {
        0x901,  # CONTEXT_GAP
        0x902,  # OBJECT_MEMORY
        0x903,  # SESSION_MEMORY
        0x904,  # MEMORY
        0x905,  # SESSION_HANDLES
        0x906,  # OBJECT_HANDLES
        0x908,  # YIELDED
        0x909,  # CANCELED
        0x90A,  # TESTING
        0x922,  # RETRY
    }
)
# Format-1 codes (bit 7 set; code in the low 6 bits, parameter/handle number above) with
# which TPM2_Load rejects the blob itself (Part 3 §12.7 lists the Load errors).
TPM_RC_FMT1 = 0x080
_FMT1_CODE_MASK = 0x3F
_BLOB_REJECTIONS = frozenset(
    {
        0x01,  # ASYMMETRIC
        0x02,  # ATTRIBUTES
        0x03,  # HASH
        0x05,  # HIERARCHY: the parent is in another hierarchy
        0x0A,  # TYPE: the parent cannot be a parent of this
        0x12,  # SCHEME
        0x15,  # SIZE
        0x16,  # SYMMETRIC
        0x1C,  # KEY
        0x1F,  # INTEGRITY: not wrapped by this parent (another EK, a cleared TPM)
        0x25,  # BINDING: public and private parts do not belong together
    }
)


def _layer(rc: int) -> int:
    return (rc >> LAYER_SHIFT) & LAYER_MASK


def is_transient(rc: Optional[int]) -> bool:
    """Whether ``rc`` is a transport, context or resource failure worth a new context."""
    if rc is None:
        return False
    layer = _layer(rc)
    if layer in (TCTI_LAYER, RESMGR_LAYER):
        return True
    if layer in (ESYS_LAYER, SYS_LAYER):
        return (rc & 0xFFFF) in _TRANSIENT_BASE_CODES
    if layer in (TPM_LAYER, RESMGR_TPM_LAYER):
        code = rc & 0xFFFF
        if code & TPM_RC_FMT1:
            return False
        return code == TPM_RC_INITIALIZE or code in _TRANSIENT_WARNINGS
    return False


def rejects_blob(rc: Optional[int]) -> bool:
    """Whether the TPM itself refused to load the blob (format-1 TPM-layer rejection)."""
    if rc is None or _layer(rc) != TPM_LAYER or not rc & TPM_RC_FMT1:
        return False
    return (rc & _FMT1_CODE_MASK) in _BLOB_REJECTIONS
