"""Blocking TPM commands through tpm2-pytss' ESAPI, each wrapped to bytes in, bytes out.

These run in a worker thread (see ``pytss_backend``); nothing here knows about trio.  Every
TSS2 failure becomes a TpmCommandError naming the operation.  tpm2-pytss has no type hints,
so its values stay inside this module and ``pytss_sync``; callers get ``bytes`` and ``int``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

from tpm2_pytss import (
    ESAPI,
    ESYS_TR,
    TPM2_ALG,
    TPM2_CAP,
    TPM2_PT_NV,
    TPM2_PT_VENDOR,
    TPM2_SE,
    TPM2B_DATA,
    TPM2B_DIGEST,
    TPM2B_ENCRYPTED_SECRET,
    TPM2B_ID_OBJECT,
    TPM2B_NONCE,
    TPM2B_PRIVATE,
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE_CREATE,
    TPML_DIGEST_VALUES,
    TPML_PCR_SELECTION,
    TPMS_ATTEST,
    TPMT_HA,
    TPMT_SIG_SCHEME,
    TPMT_SYM_DEF,
    TSS2_Exception,
)
from tpm2_pytss.utils import NoSuchIndex

from attest_protocol.tpm2.constants import TpmAlg
from attest_protocol.tpm2.pcr import PcrSelection, parse_pcr_selection
from edge_agent.tpm.errors import TctiError, TpmCommandError

# TPM2_PCR_Read returns at most 8 digests per call (TPML_DIGEST is bounded by 8 in
# TCG TPM 2.0 Part 2 §10.9.2), so larger selections take several calls.
PCR_READ_MAX_DIGESTS = 8
# Fallback NV chunk if TPM_PT_NV_BUFFER_MAX cannot be read; the PTP requires at least 512.
NV_BUFFER_MIN_BYTES = 512
# TPM_HT_NV_INDEX (Part 2 §7.2): handles 0x01xxxxxx; capability queries list them in order.
NV_INDEX_FIRST = 0x01000000
# TPM_PT_VENDOR_STRING_1..4 (Part 2 §6.13): four 4-char words naming the TPM vendor.
VENDOR_STRING_WORDS = 4
# Policy session for objects under the EK: PolicySecret(TPM_RH_ENDORSEMENT) in the EK's
# nameAlg, SHA-256 for the low-range templates (TCG EK Credential Profile §B.6, policy A).
EK_POLICY_HASH = TPM2_ALG.SHA256


@contextlib.contextmanager
def tss(operation: str) -> Iterator[None]:
    """Turn a TSS2_Exception raised in the block into TpmCommandError(operation)."""
    try:
        yield
    except TSS2_Exception as exc:
        raise TpmCommandError(operation, int(exc.rc), str(exc)) from exc


def open_esapi(tcti: str) -> tuple[Any, str]:
    """An ESAPI context on ``tcti`` and the TPM's vendor string.

    Raises TctiError if the TCTI cannot be loaded or no TPM answers through it.
    """
    try:
        esys = ESAPI(tcti)
    except (TSS2_Exception, RuntimeError) as exc:
        raise TctiError(tcti, str(exc)) from exc
    try:
        # A TCTI can "open" without a TPM behind it (e.g. a socket that accepts and stalls);
        # one harmless command proves a TPM answers.
        vendor = vendor_string(esys)
    except TpmCommandError as exc:
        esys.close()
        raise TctiError(tcti, f"no TPM answered: {exc.detail}") from exc
    return esys, vendor


def _fixed_properties(esys: Any, first: int, count: int) -> dict[int, int]:
    _more, data = esys.get_capability(TPM2_CAP.TPM_PROPERTIES, first, count)
    return {int(p.property): int(p.value) for p in data.data.tpmProperties}


def vendor_string(esys: Any) -> str:
    """TPM_PT_VENDOR_STRING_1..4 as text, e.g. "SW   TPM" for swtpm."""
    with tss("reading the TPM vendor string"):
        props = _fixed_properties(esys, TPM2_PT_VENDOR.STRING_1, VENDOR_STRING_WORDS)
    words = (props.get(TPM2_PT_VENDOR.STRING_1 + i, 0) for i in range(VENDOR_STRING_WORDS))
    return b"".join(w.to_bytes(4, "big") for w in words).rstrip(b"\0").decode("ascii", "replace")


def nv_buffer_max(esys: Any) -> int:
    """TPM_PT_NV_BUFFER_MAX: the largest chunk one TPM2_NV_Read returns."""
    with tss("reading TPM_PT_NV_BUFFER_MAX"):
        props = _fixed_properties(esys, TPM2_PT_NV.BUFFER_MAX, 1)
    return props.get(TPM2_PT_NV.BUFFER_MAX, NV_BUFFER_MIN_BYTES)


def nv_defined(esys: Any, index: int) -> bool:
    """Whether NV ``index`` exists (asked by capability, so the TSS logs no error)."""
    with tss(f"listing NV index {index:#010x}"):
        _more, data = esys.get_capability(TPM2_CAP.HANDLES, index, 1)
    return any(int(h) == index for h in data.data.handles)


def nv_read(esys: Any, index: int, chunk: int) -> bytes:
    """The whole contents of NV ``index``; raises tpm2-pytss' NoSuchIndex if undefined."""
    if not nv_defined(esys, index):
        raise NoSuchIndex(index)
    with tss(f"reading NV index {index:#010x}"):
        handle = esys.tr_from_tpmpublic(index)
        try:
            nv_public, _name = esys.nv_read_public(handle)
            size = int(nv_public.nvPublic.dataSize)
            parts = []
            for offset in range(0, size, chunk):
                # The EK certificate indexes are readable with their own (empty) auth.
                part = esys.nv_read(handle, min(chunk, size - offset), offset, auth_handle=handle)
                parts.append(bytes(part))
        finally:
            esys.tr_close(handle)
    return b"".join(parts)


def create_primary_ek(esys: Any, template: Any) -> tuple[Any, bytes]:
    """TPM2_CreatePrimary in the endorsement hierarchy: (ESYS_TR, TPM2B_PUBLIC bytes)."""
    with tss("creating the EK from its template"):
        handle, public, _data, _hash, _ticket = esys.create_primary(
            TPM2B_SENSITIVE_CREATE(), template, ESYS_TR.ENDORSEMENT
        )
    return handle, bytes(public.marshal())


def persistent_object(esys: Any, tpm_handle: int) -> tuple[Any, bytes]:
    """An object at a persistent handle: (ESYS_TR, TPM2B_PUBLIC bytes)."""
    with tss(f"loading the EK at persistent handle {tpm_handle:#010x}"):
        handle = esys.tr_from_tpmpublic(tpm_handle)
        public, _name, _qualified = esys.read_public(handle)
    return handle, bytes(public.marshal())


def tpm_handle(esys: Any, handle: Any) -> int:
    with tss("looking up a TPM handle"):
        return int(esys.tr_get_tpm_handle(handle))


# PolicySecret's expiration: 0 asks for no time limit and no ticket (TPM 2.0 Part 3, §23.4), as
# tss-esapi's policy_secret with expiration None (rust-keylime's EK session).
POLICY_SECRET_NO_EXPIRATION = 0


@contextlib.contextmanager
def ek_policy_session(esys: Any) -> Iterator[Any]:
    """A policy session satisfying the EK's authPolicy: PolicySecret(TPM_RH_ENDORSEMENT).

    The EK has adminWithPolicy and no userWithAuth, so using it as a parent (Create, Load) or
    as the decryption key of ActivateCredential needs this session (rust-keylime tpm.rs
    ``activate_credential``; tss-esapi ``ak::create_ak_2``).  The endorsement auth is empty.
    """
    with tss("starting a PolicySecret(endorsement) session"):
        session = esys.start_auth_session(
            ESYS_TR.NONE, ESYS_TR.NONE, TPM2_SE.POLICY, TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL),
            EK_POLICY_HASH,
        )  # fmt: skip
    try:
        with tss("authorising the EK with PolicySecret(endorsement)"):
            # Every argument explicit: tpm2-pytss 2.1-2.3 (Debian 13, Ubuntu 24.04) give
            # nonce_tpm, cp_hash_a, policy_ref and expiration no defaults; 3.0 does.
            esys.policy_secret(
                ESYS_TR.ENDORSEMENT, session, TPM2B_NONCE(), TPM2B_DIGEST(), TPM2B_NONCE(),
                POLICY_SECRET_NO_EXPIRATION, session1=ESYS_TR.PASSWORD,
            )  # fmt: skip
        yield session
    finally:
        with contextlib.suppress(TSS2_Exception):
            esys.flush_context(session)


def create_ak(esys: Any, ek: Any, template: Any) -> tuple[bytes, bytes]:
    """TPM2_Create of the AK under the EK: (TPM2B_PRIVATE bytes, TPM2B_PUBLIC bytes)."""
    with ek_policy_session(esys) as session, tss("creating the AK under the EK"):
        private, public, _data, _hash, _ticket = esys.create(
            ek, TPM2B_SENSITIVE_CREATE(), template, session1=session
        )
    return bytes(private.marshal()), bytes(public.marshal())


def load_ak(esys: Any, ek: Any, private: bytes, public: bytes) -> Any:
    """TPM2_Load of a stored AK under the EK; returns its ESYS_TR."""
    priv, _ = TPM2B_PRIVATE.unmarshal(private)
    pub, _ = TPM2B_PUBLIC.unmarshal(public)
    with ek_policy_session(esys) as session, tss("loading the stored AK under the EK"):
        return esys.load(ek, priv, pub, session1=session)


def flush(esys: Any, handle: Any) -> None:
    with tss("flushing a transient object"):
        esys.flush_context(handle)


def pcr_read(esys: Any, hash_alg: TpmAlg, pcrs: Iterable[int]) -> dict[int, bytes]:
    """Current values of ``pcrs`` in bank ``hash_alg``, in as many PCR_Read calls as needed."""
    values: dict[int, bytes] = {}
    wanted = sorted(set(pcrs))
    while len(values) < len(wanted):
        remaining = [p for p in wanted if p not in values]
        request = PcrSelection.single(hash_alg, remaining).encode()
        with tss(f"reading PCRs {remaining} in bank {hash_alg.name}"):
            _counter, returned, digests = esys.pcr_read(_pytss_selection(request))
        # The TPM answers with the PCRs it read (at most 8) and drops banks it lacks.
        got = sorted(parse_pcr_selection(bytes(returned.marshal())).pcrs(hash_alg))
        if not got or not set(got) <= set(remaining):
            detail = f"bank {hash_alg.name} is not allocated or returned other PCRs"
            raise TpmCommandError(f"reading PCRs {remaining}", None, detail)
        values.update(zip(got, (bytes(d) for d in digests)))
    return values


def _pytss_selection(marshalled: bytes) -> Any:
    selection, _ = TPML_PCR_SELECTION.unmarshal(marshalled)
    return selection


def _digest_values(hash_alg: int, digest: bytes) -> Any:
    """A TPML_DIGEST_VALUES of one TPMT_HA (hashAlg u16 || digest, Part 2 §10.3.2)."""
    ha, _ = TPMT_HA.unmarshal(hash_alg.to_bytes(2, "big") + digest)
    return TPML_DIGEST_VALUES([ha])


def pcr_reset_and_extend(esys: Any, pcr: int, hash_alg: int, digest: bytes) -> None:
    """TPM2_PCR_Reset then TPM2_PCR_Extend of one bank's digest (the PCR must be resettable)."""
    values = _digest_values(hash_alg, digest)
    with tss(f"resetting and extending PCR {pcr}"):
        esys.pcr_reset(ESYS_TR.PCR0 + pcr)
        esys.pcr_extend(ESYS_TR.PCR0 + pcr, values)


def pcr_extend(esys: Any, pcr: int, hash_alg: int, digest: bytes) -> None:
    values = _digest_values(hash_alg, digest)
    with tss(f"extending PCR {pcr}"):
        esys.pcr_extend(ESYS_TR.PCR0 + pcr, values)


def quote(esys: Any, ak: Any, nonce: bytes, selection: PcrSelection) -> tuple[bytes, bytes, bytes]:
    """TPM2_Quote with the AK's own scheme: (TPMS_ATTEST, TPMT_SIGNATURE, pcrDigest)."""
    sel = _pytss_selection(selection.encode())
    with tss("quoting PCRs with the AK"):
        attest, signature = esys.quote(
            ak, sel, TPM2B_DATA(nonce), TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL)
        )
    attest_bytes = bytes(attest)
    parsed, _ = TPMS_ATTEST.unmarshal(attest_bytes)
    return attest_bytes, bytes(signature.marshal()), bytes(parsed.attested.quote.pcrDigest)


def certify(esys: Any, obj: Any, sign: Any, qualifying_data: bytes) -> tuple[bytes, bytes]:
    """TPM2_Certify of ``obj`` signed by ``sign`` with its own scheme: (TPMS_ATTEST,
    TPMT_SIGNATURE).  Both keys take a password session (their auth values are empty)."""
    with tss("certifying an object with the AK"):
        attest, signature = esys.certify(
            obj,
            sign,
            TPM2B_DATA(qualifying_data),
            TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL),
            session1=ESYS_TR.PASSWORD,
            session2=ESYS_TR.PASSWORD,
        )
    return bytes(attest), bytes(signature.marshal())


def activate_credential(
    esys: Any, ak: Any, ek: Any, id_object: bytes, encrypted_secret: bytes
) -> bytes:
    """TPM2_ActivateCredential: AK with a password session, EK with PolicySecret."""
    credential = TPM2B_ID_OBJECT(id_object)
    secret = TPM2B_ENCRYPTED_SECRET(encrypted_secret)
    with ek_policy_session(esys) as session, tss("activating the credential (AK, EK)"):
        cert_info = esys.activate_credential(
            ak, ek, credential, secret, session1=ESYS_TR.PASSWORD, session2=session
        )
    return bytes(cert_info)


# Handle ranges (Part 2 §7.2, TPM_HT_*) of what a process leaves in the TPM when it dies
# without flushing: transient objects, loaded HMAC and policy sessions.
LEFTOVER_HANDLE_RANGES = (0x80000000, 0x02000000, 0x03000000)
# TPM_PT_HR_TRANSIENT_MAX and friends are a handful on real TPMs (3 to 7); ask for more.
LEFTOVER_QUERY_COUNT = 64


def flush_leftovers(esys: Any) -> int:
    """Flush every transient object and loaded session the TPM lists (``tpm2_flushcontext -ts``).

    Through /dev/tpmrm0 or tpm2-abrmd the list holds this connection's objects only, which are
    none right after opening; on a raw TPM or swtpm it holds what a crashed predecessor left,
    which would fill the TPM's few slots (TPM_RC_OBJECT_MEMORY).  Returns how many were flushed.
    """
    flushed = 0
    for first in LEFTOVER_HANDLE_RANGES:
        with tss(f"listing handles from {first:#010x}"):
            _more, data = esys.get_capability(TPM2_CAP.HANDLES, first, LEFTOVER_QUERY_COUNT)
        for handle in (int(h) for h in data.data.handles):
            if handle >> 24 != first >> 24:
                break  # the list runs on into the next handle type
            with tss(f"flushing leftover handle {handle:#010x}"):
                esys.flush_context(esys.tr_from_tpmpublic(handle))
            flushed += 1
    return flushed
