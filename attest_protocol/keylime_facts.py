"""Facts of Keylime's protocol that the agent, the verifier and the tenant all rely on.

Each is defined here once, with the Keylime source it comes from; the components import it.

* ``DATA_PCR``: keylime/config.py ``TPM_DATA_PCR`` (rust-keylime tpm.rs binds the same PCR).
  The agent resets it and extends it with H(NK public key PEM), so a quote proves which key
  the tenant's U share is to be encrypted to.
* ``IMA_PCR``: keylime/config.py ``IMA_PCR``, the kernel's CONFIG_IMA_MEASURE_PCR_IDX default.
* ``ENC_ALG_ALIASES``: keylime/common/algorithms.py ``Encrypt.normalize`` (and rust-keylime
  algorithms.rs): "rsa" means RSA-2048 and "ecc" NIST P-256; API 2.5 spells them with sizes.
* ``expected_data_pcr``: keylime/tpm/tpm_main.py ``sim_extend``: the value DATA_PCR holds.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes

from attest_protocol.tpm2.constants import TpmAlg, digest_size, hash_for_alg

DATA_PCR = 16
IMA_PCR = 10
ENC_ALG_ALIASES: dict[str, str] = {"rsa": "rsa2048", "ecc": "ecc256"}


def normalize_enc_alg(name: str) -> str:
    """Keylime's ``Encrypt.normalize``: the sized name of an alias, other names unchanged."""
    return ENC_ALG_ALIASES.get(name, name)


def enc_alg_accepted(name: str, accepted: tuple[str, ...]) -> bool:
    """Keylime's ``algorithms.is_accepted``: an exact match, or the same normalized name."""
    return name in accepted or any(
        normalize_enc_alg(a) == normalize_enc_alg(name) for a in accepted
    )


def extend_from_zero(hash_alg: TpmAlg, data: bytes) -> bytes:
    """The value of a reset PCR after one extend with H(data) (Keylime ``sim_extend``)."""
    inner = hashes.Hash(hash_for_alg(hash_alg))
    inner.update(data)
    outer = hashes.Hash(hash_for_alg(hash_alg))
    outer.update(bytes(digest_size(hash_alg)) + inner.finalize())
    return outer.finalize()


def expected_data_pcr(hash_alg: TpmAlg, pubkey_pem: str) -> bytes:
    """What DATA_PCR must hold in a quote of an agent whose NK public key is ``pubkey_pem``."""
    return extend_from_zero(hash_alg, pubkey_pem.encode("utf-8"))
