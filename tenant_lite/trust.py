"""What ``add`` checks before it trusts an agent: the EK certificate and the identity quote.

* EK certificate (keylime/tenant.py ``check_ek``, ``validate_tpm_quote``): with
  ``require_ek_cert`` the registrar's ``ekcert`` must chain to a self-signed certificate in the
  EK trust store, and (limelet, as the registrar checks) carry ``ek_tpm``'s public key. An
  ``ek_check_script`` then gets the last word, with Keylime's environment (AGENT_UUID, EK,
  EK_TPM, EK_CERT, PROVKEYS, TPM_CERT_STORE); exit status 0 accepts.
* Identity quote (``do_quote``): algorithms in the accepted lists, the quote signed by the
  registered AK over our nonce (attest_protocol.quote.verify_quote), and PCR 16 equal to
  extend(0, H(pubkey)) where pubkey is the NK public key PEM text the agent sent
  (keylime/tpm/tpm_main.py ``sim_extend``): the NK lives with this TPM.

Like Keylime, certificate validity dates are not checked on the EK chain: TPM vendors issue
EK certificates and intermediates whose dates do not track the device's life.
"""

from __future__ import annotations

import base64
import binascii
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

from cryptography import x509

from attest_protocol.ek_trust import (
    TrustStoreError,
    chains_to_store,
    read_cert_store,
    same_public_key,
)
from attest_protocol.errors import AlgorithmError, AttestProtocolError
from attest_protocol.keylime_facts import DATA_PCR, expected_data_pcr, normalize_enc_alg
from attest_protocol.quote import KeylimeQuote, verify_quote
from attest_protocol.tpm2.constants import alg_for_hash_name
from attest_protocol.tpm2.public import parse_tpm2b_public
from tenant_lite.errors import AttestationError, ConfigError

EK_SCRIPT_TIMEOUT_SECONDS = 60.0
# Variables handed to an ek_check_script beyond Keylime's own (it runs with os.environ).
_SCRIPT_PASSED_ENV = ("PATH", "LANG", "HOME")


def load_trust_store(directory: Path) -> tuple[x509.Certificate, ...]:
    try:
        return read_cert_store(directory)
    except TrustStoreError as exc:
        raise ConfigError("tpm_cert_store", exc.reason) from exc


def check_ek_certificate(agent_id: str, record: Mapping[str, Any], store_dir: Path) -> None:
    """AttestationError unless the registrar's EK certificate chains to ``store_dir``."""
    ekcert = record.get("ekcert")
    if not isinstance(ekcert, str) or not ekcert or ekcert == "emulator":
        raise AttestationError(
            "ek-certificate", f"agent {agent_id} has no EK certificate at the registrar"
        )
    try:
        cert = x509.load_der_x509_certificate(base64.b64decode(ekcert, validate=True))
    except (ValueError, binascii.Error) as exc:
        raise AttestationError("ek-certificate", f"agent {agent_id}: bad EK certificate") from exc
    if not chains_to_store(cert, load_trust_store(store_dir)):
        raise AttestationError(
            "ek-certificate",
            f"the EK certificate of agent {agent_id} (issuer {cert.issuer.rfc4514_string()}) "
            f"does not verify against the EK CA certificates in {store_dir}",
        )
    ek = parse_tpm2b_public(base64.b64decode(str(record.get("ek_tpm", ""))))
    if not same_public_key(ek.public_key(), cert.public_key()):
        raise AttestationError(
            "ek-certificate", f"agent {agent_id}: ek_tpm is not the key in its EK certificate"
        )


def run_ek_check_script(
    script: str, agent_id: str, record: Mapping[str, Any], store_dir: str
) -> None:
    """Keylime's ek_check_script contract; a non-zero exit is AttestationError."""
    ek_tpm = str(record.get("ek_tpm", ""))
    env = {k: os.environ[k] for k in _SCRIPT_PASSED_ENV if k in os.environ}
    env.update(
        AGENT_UUID=agent_id,
        EK=parse_tpm2b_public(base64.b64decode(ek_tpm)).public_key_pem().decode("ascii"),
        EK_TPM=ek_tpm,
        EK_CERT=str(record.get("ekcert") or ""),
        PROVKEYS="{}",
        TPM_CERT_STORE=store_dir,
    )
    try:
        done = subprocess.run(  # noqa: S603 - the operator's own script, by path
            [script],
            env=env,
            capture_output=True,
            timeout=EK_SCRIPT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError("ek_check_script", f"{script} could not run: {exc}") from exc
    if done.returncode != 0:
        raise AttestationError(
            "ek-check-script",
            f"{script} rejected the EK of agent {agent_id} (exit {done.returncode})",
        )


def _check_algs(results: Mapping[str, Any], accepted: Mapping[str, frozenset[str]]) -> str:
    for kind, key in (("hash", "hash_alg"), ("encryption", "enc_alg"), ("signing", "sign_alg")):
        name = results.get(key)
        allowed = {normalize_enc_alg(a) for a in accepted[kind]}
        if not isinstance(name, str) or normalize_enc_alg(name) not in allowed:
            raise AttestationError(
                "identity-quote",
                f"the agent's {key} {str(name)[:32]!r} is not in accept_tpm_{kind}_algs",
            )
    return str(results["hash_alg"])


def check_identity_quote(
    agent_id: str,
    results: Mapping[str, Any],
    aik_tpm_b64: str,
    nonce: str,
    accepted: Mapping[str, frozenset[str]],
) -> str:
    """Verify ``quotes/identity`` results; return the agent's NK public key PEM."""
    hash_name = _check_algs(results, accepted)
    pubkey = results.get("pubkey")
    quote_text = results.get("quote")
    if not isinstance(pubkey, str) or not isinstance(quote_text, str):
        raise AttestationError("identity-quote", f"agent {agent_id} sent no quote or pubkey")
    try:
        ak = parse_tpm2b_public(base64.b64decode(aik_tpm_b64, validate=True))
        verified = verify_quote(
            KeylimeQuote.parse(quote_text),
            ak,
            nonce.encode("ascii"),
            hash_alg=alg_for_hash_name(hash_name),
        )
    except (AttestProtocolError, AlgorithmError, binascii.Error) as exc:
        raise AttestationError(
            "identity-quote",
            f"the identity quote of agent {agent_id} does not verify with its registered AK: {exc}",
        ) from exc
    if verified.pcrs.get(DATA_PCR) != expected_data_pcr(alg_for_hash_name(hash_name), pubkey):
        raise AttestationError(
            "identity-quote",
            f"PCR {DATA_PCR} of agent {agent_id} is not bound to the public key it sent",
        )
    return pubkey


def ek_checks(
    agent_id: str,
    record: Mapping[str, Any],
    *,
    require_ek_cert: bool,
    store_dir: Optional[Path],
    script: str,
) -> list[str]:
    """Run the configured EK checks; returns warnings for the operator (none run: insecure)."""
    if require_ek_cert:
        if store_dir is None:
            raise ConfigError("tpm_cert_store", "require_ek_cert is on but no store is set")
        check_ek_certificate(agent_id, record, store_dir)
    if script:
        run_ek_check_script(script, agent_id, record, str(store_dir or ""))
    if not require_ek_cert and not script:
        return [
            "EK certificate checking is off and no ek_check_script is set: the agent's "
            "TPM is not known to be genuine"
        ]
    return []
