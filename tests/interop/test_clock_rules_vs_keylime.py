"""``check_clock(..., keylime_rules=True)`` and Keylime 7.14.3's own ``check_quote_timing``
(keylime/tpm/tpm_main.py) accept and refuse the same clocks.

Each case of tests/unit/test_quote.py KEYLIME_CLOCK_CASES becomes a quote string whose
TPMS_ATTEST carries that clock; Keylime reads the clock from the string itself (it does not
check the signature there), so the signature and PCR blob are placeholders.
"""

from __future__ import annotations

import base64

import pytest

from attest_protocol.errors import QuoteClockError
from attest_protocol.quote import check_clock
from attest_protocol.tpm2.attest import ClockInfo
from attest_protocol.tpm2.constants import TpmAlg
from attest_protocol.tpm2.pcr import PcrSelection
from tests.unit.test_quote import KEYLIME_CLOCK_CASES, NONCE, PREVIOUS, VALUES, make_attest
from tools.keylime_snippets import run_in_keylime

pytestmark = pytest.mark.interop

_SNIPPET = """\
from keylime.agentstates import TPMClockInfo
from keylime.tpm.tpm_main import Tpm
previous = TPMClockInfo.from_dict(payload["previous"])
result = {}
for name, quote in payload["quotes"].items():
    error, _ = Tpm.check_quote_timing(previous, quote, False)
    result[name] = error
"""


def quote_string(clock: ClockInfo) -> str:
    selection = PcrSelection.single(TpmAlg.SHA256, VALUES)
    attest = make_attest(selection, VALUES, nonce=NONCE, clock=clock)
    placeholder = base64.b64encode(b"\0\0").decode()
    return f"r{base64.b64encode(attest).decode()}:{placeholder}:{placeholder}"


def ours(current: ClockInfo) -> bool:
    try:
        check_clock(PREVIOUS, current, keylime_rules=True)
    except QuoteClockError:
        return False
    return True


def test_clock_rules_match_keylime() -> None:
    previous = {
        "clock": PREVIOUS.clock,
        "resetCount": PREVIOUS.reset_count,
        "restartCount": PREVIOUS.restart_count,
        "safe": int(PREVIOUS.safe),
    }
    quotes = {name: quote_string(current) for name, current, _ in KEYLIME_CLOCK_CASES}
    theirs = run_in_keylime(_SNIPPET, {"previous": previous, "quotes": quotes}, timeout=120)
    assert set(theirs) == set(quotes)
    for name, current, accepted in KEYLIME_CLOCK_CASES:
        assert (theirs[name] is None) == accepted == ours(current), (name, theirs[name])
