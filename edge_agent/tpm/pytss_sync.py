"""The TPM operations the agent needs, as one blocking object over one ESAPI context.

``EsysTpm`` owns the context and the EK/AK handles, made lazily on first use.  It is not
thread-safe: ``pytss_backend.PytssTpm`` calls it from one worker thread at a time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Optional

from attest_protocol.credential import parse_credential_blob
from attest_protocol.quote import KeylimeQuote, encode_pcr_blob
from attest_protocol.tpm2.constants import TpmAlg, alg_for_hash_name, keylime_name
from attest_protocol.tpm2.pcr import PcrSelection
from attest_protocol.tpm2.public import parse_tpm2b_public
from edge_agent.tpm import agent_data, ak_store, esys_ops, owner_auth, rc, templates
from edge_agent.tpm.ak_store import StoredAk
from edge_agent.tpm.config import TpmConfig
from edge_agent.tpm.errors import (
    AkMismatch,
    AkNotLoaded,
    EkCertificateMissing,
    PcrsKeptChanging,
    TpmCommandError,
    TpmConfigError,
)
from edge_agent.tpm.protocol import DATA_PCR, MAX_NONCE_BYTES, AkInfo, EkInfo

__all__ = ["DATA_PCR", "MAX_NONCE_BYTES", "QUOTE_ATTEMPTS", "EsysTpm", "QuoteRaceHook"]

log = logging.getLogger(__name__)

# Quote-then-read attempts before giving up when PCRs keep changing in between
# (rust-keylime tpm.rs NUM_ATTESTATION_ATTEMPTS).
QUOTE_ATTEMPTS = 5

PcrExtender = Callable[[int, bytes], None]
QuoteRaceHook = Callable[[int, PcrExtender], None]
"""Test-only: called after each TPM2_Quote, before the PCR read, with the attempt number
(0-based) and ``extend(pcr, data)``, which extends ``pcr`` in the quoted bank with H(data)."""


@dataclass(frozen=True)
class _Loaded:
    handle: Any  # ESYS_TR
    public: bytes  # TPM2B_PUBLIC


class EsysTpm:
    """Blocking TPM operations for one agent; see ``edge_agent.tpm.protocol.Tpm``."""

    def __init__(
        self,
        esys: Any,
        config: TpmConfig,
        vendor: str,
        quote_race_hook: Optional[QuoteRaceHook] = None,
    ) -> None:
        self.vendor = vendor  # TPM_PT_VENDOR_STRING_*, e.g. "SW   TPM" for swtpm
        self._esys = esys
        self._config = config
        self._race_hook = quote_race_hook
        owner_auth.apply_endorsement_auth(esys, config.endorsement_auth)
        self._nv_chunk = esys_ops.nv_buffer_max(esys)
        self._ek: Optional[_Loaded] = None
        self._ek_transient = False
        self._ak: Optional[tuple[AkInfo, Any]] = None  # and its ESYS_TR

    @classmethod
    def open(cls, config: TpmConfig, quote_race_hook: Optional[QuoteRaceHook] = None) -> EsysTpm:
        esys, vendor = esys_ops.open_esapi(config.tcti)
        try:
            # Before any key is loaded: a crashed predecessor's objects would fill the slots.
            flushed = esys_ops.flush_leftovers(esys)
            if flushed:
                log.info("flushed %d transient objects or sessions left in the TPM", flushed)
            return cls(esys, config, vendor, quote_race_hook)
        except BaseException:
            esys.close()
            raise

    # --- EK -------------------------------------------------------------------------------

    def _ensure_ek(self) -> _Loaded:
        if self._ek is None:
            handle = self._config.ek_handle
            if handle is not None:
                self._ek = _Loaded(*esys_ops.persistent_object(self._esys, handle))
            else:
                template = templates.ek_template(self._config.encryption_alg, self._nv_read)
                self._ek = _Loaded(*esys_ops.create_primary_ek(self._esys, template))
                self._ek_transient = True
        return self._ek

    def _nv_read(self, index: int) -> bytes:
        return esys_ops.nv_read(self._esys, index, self._nv_chunk)

    def ek(self) -> EkInfo:
        ek = self._ensure_ek()
        kind = keylime_name(parse_tpm2b_public(ek.public).type)
        return EkInfo(ek.public, esys_ops.tpm_handle(self._esys, ek.handle), kind)

    def ek_certificate(self) -> bytes:
        index, what = templates.ek_cert_nv_index(parse_tpm2b_public(self._ensure_ek().public))
        if not esys_ops.nv_defined(self._esys, index):
            raise EkCertificateMissing(index, what)
        return _strip_der_padding(self._nv_read(index))

    # --- AK -------------------------------------------------------------------------------

    def ak(self) -> AkInfo:
        return self._ensure_ak()[0]

    def _ensure_ak(self) -> tuple[AkInfo, Any]:
        """The AK and its ESYS_TR, reloaded or created on first use."""
        if self._ak is None:
            self._ak = self._load_or_create_ak()
        return self._ak

    def _load_or_create_ak(self) -> tuple[AkInfo, Any]:
        ek = self._ensure_ek()
        cfg = self._config
        _check_ek_policy_hash(ek.public, cfg.ek_handle)
        want = ak_store.StoredAk(
            b"", b"", cfg.encryption_alg, cfg.hash_alg, cfg.signing_alg,
            agent_data.ek_hash(ek.public),
        )  # fmt: skip
        reloaded = self._reload_ak(ek, want)
        stored, handle = reloaded if reloaded is not None else self._create_ak(ek, want)
        name = parse_tpm2b_public(stored.public).name()
        info = AkInfo(stored.public, name, cfg.hash_alg, cfg.signing_alg, reloaded is None)
        return info, handle

    def _reload_ak(self, ek: _Loaded, want: StoredAk) -> Optional[tuple[StoredAk, Any]]:
        """The stored AK and its handle, or None when a new one is needed."""
        path = self._config.ak_path
        try:
            stored = agent_data.load(
                path, want=want, ek_public=ek.public, legacy=self._config.legacy_ak_path
            )
        except AkMismatch as exc:
            log.info("not reusing the AK in %s: %s", path, exc.reason)
            return None
        try:
            handle = esys_ops.load_ak(self._esys, ek.handle, stored.private, stored.public)
        except TpmCommandError as exc:
            # Only a definitive rejection of the blob replaces it: on a resource or transport
            # error the same AK loads again later, and a new one would be refused (403) by
            # the registrar that knows this agent's old AK.
            if not rc.rejects_blob(exc.rc):
                raise AkNotLoaded(path, exc) from exc
            log.warning("the TPM refused the stored AK in %s, making a new one: %s", path, exc)
            return None
        log.info("reloaded the AK from %s", path)
        return stored, handle

    def _create_ak(self, ek: _Loaded, want: StoredAk) -> tuple[StoredAk, Any]:
        cfg = self._config
        template = templates.ak_template(cfg.encryption_alg, cfg.signing_alg, cfg.hash_alg)
        private, public = esys_ops.create_ak(self._esys, ek.handle, template)
        handle = esys_ops.load_ak(self._esys, ek.handle, private, public)
        stored = dataclasses.replace(want, private=private, public=public)
        agent_data.save(cfg.ak_path, stored)
        log.info("created a new AK and stored it in %s", cfg.ak_path)
        return stored, handle

    # --- PCRs and quotes -------------------------------------------------------------------

    def read_pcrs(self, hash_alg: str, pcrs: Iterable[int]) -> dict[int, bytes]:
        return esys_ops.pcr_read(self._esys, alg_for_hash_name(hash_alg), list(pcrs))

    def bind_data_pcr(self, nk_public_pem: bytes) -> None:
        # rust-keylime tpm.rs build_pcr_list/pubkey_to_tpm_digest: reset PCR 16, then extend
        # the configured bank with H(PEM of the NK public key), the exact bytes hashed being
        # the PEM the agent returns as "pubkey" (Keylime's verifier hashes that string).
        alg = self._config.hash_alg
        digest = hashlib.new(alg, nk_public_pem).digest()
        esys_ops.pcr_reset_and_extend(self._esys, DATA_PCR, alg_for_hash_name(alg), digest)

    def quote(self, nonce: bytes, mask: int, hash_alg: Optional[str] = None) -> KeylimeQuote:
        if len(nonce) > MAX_NONCE_BYTES:
            raise ValueError(f"nonce is {len(nonce)} bytes; at most {MAX_NONCE_BYTES}")
        alg_name = hash_alg or self._config.hash_alg
        alg = alg_for_hash_name(alg_name)
        selection = PcrSelection.from_mask(mask, alg)
        pcrs = sorted(selection.pcrs(alg))
        info, ak = self._ensure_ak()
        for attempt in range(QUOTE_ATTEMPTS):
            attest, signature, pcr_digest = esys_ops.quote(self._esys, ak, nonce, selection)
            if self._race_hook is not None:
                self._race_hook(attempt, self._extender(alg))
            values = esys_ops.pcr_read(self._esys, alg, pcrs)
            # pcrDigest = H(selected PCR values in selection order) with the hash of the AK's
            # signing scheme, TCG Part 3 §18.4.  If a PCR was extended between the two
            # commands, the values read are not the ones quoted: quote again (rust-keylime
            # tpm.rs perform_quote_and_pcr_read).
            joined = b"".join(values[p] for p in pcrs)
            read_digest = hashlib.new(info.hash_alg, joined).digest()
            if hmac.compare_digest(read_digest, pcr_digest):
                return KeylimeQuote(attest, signature, encode_pcr_blob(alg, values))
            log.info("PCRs changed between quote and read (attempt %d); quoting again", attempt)
        raise PcrsKeptChanging(QUOTE_ATTEMPTS)

    def bound_quote(
        self, nk_public_pem: bytes, nonce: bytes, mask: int, hash_alg: Optional[str] = None
    ) -> KeylimeQuote:
        """Bind PCR 16 to the NK and quote ``mask`` plus PCR 16, in one command sequence."""
        self.bind_data_pcr(nk_public_pem)
        return self.quote(nonce, mask | 1 << DATA_PCR, hash_alg)

    def _extender(self, alg: TpmAlg) -> PcrExtender:
        def extend(pcr: int, data: bytes) -> None:
            digest = hashlib.new(alg.name.lower(), data).digest()
            esys_ops.pcr_extend(self._esys, pcr, alg, digest)

        return extend

    # --- credential activation and shutdown --------------------------------------------------

    def activate_credential(self, blob: bytes) -> bytes:
        parsed = parse_credential_blob(blob)
        _info, ak = self._ensure_ak()
        ek = self._ensure_ek().handle
        return esys_ops.activate_credential(
            self._esys, ak, ek, parsed.id_object, parsed.encrypted_secret
        )

    def certify_ak(self, qualifying_data: bytes) -> tuple[bytes, bytes]:
        # The push model's proof of possession: the AK certifies itself over the verifier's
        # challenge (rust-keylime keylime/src/tpm.rs certify_credential; Keylime verifies it
        # in keylime/tpm/tpm_main.py verify_tpm_object).
        if len(qualifying_data) > MAX_NONCE_BYTES:
            size = len(qualifying_data)
            raise ValueError(f"challenge is {size} bytes; at most {MAX_NONCE_BYTES}")
        _info, ak = self._ensure_ak()
        return esys_ops.certify(self._esys, ak, ak, qualifying_data)

    def close(self) -> None:
        """Flush the transient AK and EK (never a persistent EK) and close the context."""
        try:
            if self._ak is not None:
                esys_ops.flush(self._esys, self._ak[1])
            if self._ek is not None and self._ek_transient:
                esys_ops.flush(self._esys, self._ek.handle)
        finally:
            self._ak, self._ek = None, None
            self._esys.close()


def _check_ek_policy_hash(ek_public: bytes, ek_handle: Optional[int]) -> None:
    """Refuse EKs whose policy is not in SHA-256 before the TPM fails with a policy error.

    esys_ops.ek_policy_session satisfies policy A in SHA-256 (the low-range templates).
    High-range SHA-384/512 EKs need PolicyOR(policy A, policy C) too (EK Credential Profile
    §B.6; rust-keylime tpm.rs POLICY_A_/POLICY_C_ digests), which we do not implement.
    """
    name_alg = parse_tpm2b_public(ek_public).name_alg
    if name_alg != TpmAlg.SHA256:
        handle = "generate" if ek_handle is None else f"{ek_handle:#x}"
        reason = f"the EK's policy is in {name_alg.name}; only SHA-256 EKs can parent the AK"
        raise TpmConfigError("ek_handle", handle, reason)


def _strip_der_padding(data: bytes) -> bytes:
    """Cut NV padding after a DER SEQUENCE (some TPMs pad certificates; rust-keylime re-encodes).

    Data that is not a definite-length DER SEQUENCE is returned unchanged.
    """
    if len(data) < 2 or data[0] != 0x30:
        return data
    first = data[1]
    if first < 0x80:
        return data[: 2 + first]
    n = first & 0x7F
    if n == 0 or n > 4 or len(data) < 2 + n:
        return data
    length = int.from_bytes(data[2 : 2 + n], "big")
    return data[: 2 + n + length]
