"""One exception tree: every error attest_protocol raises is an AttestProtocolError.

The five that began as bare ValueErrors stay ValueErrors too, since callers catch them so;
the handlers (service_kit/web.py) map them by ``http_status``.
"""

from __future__ import annotations

import pytest

from attest_protocol.bootstrap_keys import BootstrapCryptoError, NkKeyError, nk_public_key
from attest_protocol.ek_trust import EkTrustError
from attest_protocol.errors import AttestProtocolError
from attest_protocol.ima.fields import FieldError
from attest_protocol.policy.keys import UnsupportedKeyError
from attest_protocol.settings import SettingsError


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (EkTrustError, 400),
        (FieldError, 400),
        (UnsupportedKeyError, 400),
        (BootstrapCryptoError, 400),
        (SettingsError, 500),
    ],
)
def test_former_value_error_roots_are_in_the_tree(
    error: type[AttestProtocolError], status: int
) -> None:
    assert issubclass(error, AttestProtocolError)
    assert issubclass(error, ValueError)
    assert error.http_status == status


@pytest.mark.parametrize("pem", ["not a key", "-----BEGIN PUBLIC KEY-----\nAAAA\n"])
def test_an_unusable_nk_is_named(pem: str) -> None:
    with pytest.raises(NkKeyError, match="the agent's public key is not a PEM public key"):
        nk_public_key(pem)
