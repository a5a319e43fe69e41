"""TPM 2.0 structure codecs (TCG TPM 2.0 Library Part 2): pure functions on bytes.

::

    marshal     Reader / Writer: big-endian cursor and builder, ParseError past the end
    constants   TpmAlg, EccCurve, TpmaObject, Keylime algorithm names, hash lookups
    pcr         PcrSelection and TPML_PCR_SELECTION, PCR mask strings
    public      TpmPublic (TPM2B_PUBLIC for RSA and ECC), Name, AK attribute check
    attest      TpmsAttest (TPMS_ATTEST of a quote) and ClockInfo
    signature   TpmtSignature (RSASSA, RSAPSS, ECDSA) and its verification
"""

from __future__ import annotations
