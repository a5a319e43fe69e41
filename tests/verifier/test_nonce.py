"""The verifier's quote nonces (verifier_lite/poller.py new_nonce): Keylime's shape (20
letters and digits, keylime/tpm/tpm_abstract.py), never repeated, every character equally
likely (a biased alphabet would shrink the space an attacker has to guess)."""

from __future__ import annotations

import string
from collections import Counter

from verifier_lite.poller import NONCE_LENGTH, new_nonce

ALPHABET = string.ascii_letters + string.digits
SAMPLES = 3000


def test_nonces_are_unique_letters_and_digits_uniformly() -> None:
    nonces = [new_nonce() for _ in range(SAMPLES)]
    assert len(set(nonces)) == SAMPLES
    assert all(len(n) == NONCE_LENGTH and set(n) <= set(ALPHABET) for n in nonces)
    counts = Counter("".join(nonces))
    expected = SAMPLES * NONCE_LENGTH / len(ALPHABET)  # about 968 of each
    # Bounds 6 to 8 standard deviations out: a fair draw never leaves them, a modulo bias
    # towards the first characters (256 % 62 = 8 of them drawn 5/4 as often) does.
    assert set(counts) == set(ALPHABET)
    assert all(0.75 * expected < c < 1.2 * expected for c in counts.values()), counts
