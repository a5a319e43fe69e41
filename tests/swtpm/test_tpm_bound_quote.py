"""``Tpm.bound_quote``: PCR 16 bound to the given NK and quoted in one TPM-layer operation.

Callers used to bind and quote in two calls with a server-side lock around them; a caller
that forgot the lock could have another task's bind land between them.  Here several tasks
quote at once, each with its own key, and every quote carries its own key's PCR 16.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from attest_protocol.quote import KeylimeQuote, verify_quote
from attest_protocol.tpm2.public import parse_tpm2b_public
from edge_agent.tpm.protocol import DATA_PCR
from tests.swtpm.support import NONCE, config, opened
from tests.swtpm.test_tpm_quote import _extend
from tools.swtpm import Swtpm

pytestmark = pytest.mark.swtpm

CALLERS = 6
FIRMWARE_PCR_MASK = 0x1  # PCR 0 only: bound_quote adds PCR 16 itself


def key_pem(n: int) -> bytes:
    return b"-----BEGIN PUBLIC KEY-----\ncaller %d\n-----END PUBLIC KEY-----\n" % n


async def test_concurrent_bound_quotes_each_carry_their_own_key(
    swtpm: Swtpm, tmp_path: Path
) -> None:
    quotes: dict[int, KeylimeQuote] = {}
    async with opened(config(swtpm.tcti, tmp_path)) as tpm:
        ak = parse_tpm2b_public((await tpm.ak()).public)

        async def caller(n: int) -> None:
            quotes[n] = await tpm.bound_quote(key_pem(n), NONCE, FIRMWARE_PCR_MASK)

        async with trio.open_nursery() as nursery:
            for n in range(CALLERS):
                nursery.start_soon(caller, n)
    assert sorted(quotes) == list(range(CALLERS))
    for n, quote in quotes.items():
        pcrs = verify_quote(quote, ak, NONCE).pcrs
        assert sorted(pcrs) == [0, DATA_PCR]
        assert pcrs[DATA_PCR] == _extend(bytes(32), key_pem(n)), n
