"""An in-process agent for engine tests: valid quotes from the fleet simulator's software TPM.

``SoftChannel`` implements ``AgentChannel`` with bench/fleet/quote.py (the quotes Keylime's own
``checkquote`` accepts, tests/interop/test_fleet_quotes_vs_keylime.py), so the real engine
and checks run on good evidence without a network or a TPM, in virtual time if wanted.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import trio
from cryptography.hazmat.primitives.asymmetric import rsa

from attest_protocol.api_version import ApiVersion
from attest_protocol.tpm2.attest import ClockInfo
from attest_protocol.tpm2.pcr import parse_mask
from bench.fleet import identity
from bench.fleet.quote import AgentTpm, data_pcr
from tests.verifier.test_store import record
from verifier_lite.agent_client import QuoteRequest
from verifier_lite.records import AgentRecord

_NK = rsa.generate_private_key(65537, 2048)
NK_PEM = identity.nk_public_pem(_NK)


@dataclass
class SoftChannel:
    index: int
    requests: list[QuoteRequest] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    answer_delay: float = 0.0
    clock_ms: int = 1000

    @property
    def tpm(self) -> AgentTpm:
        ak = identity.ak_private(self.index)
        return AgentTpm(ak, identity.ak_public(ak).name(), data_pcr(NK_PEM))

    async def versions(self) -> tuple[ApiVersion, ...]:
        return (ApiVersion(2, 1),)

    async def integrity_quote(
        self, version: ApiVersion, request: QuoteRequest
    ) -> Mapping[str, Any]:
        self.requests.append(request)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await trio.sleep(self.answer_delay)
        finally:
            self.in_flight -= 1
        self.clock_ms += 1000
        mask = parse_mask(request.mask) | 1 << 16
        quote = self.tpm.quote(request.nonce.encode(), mask, ClockInfo(self.clock_ms, 0, 0, True))
        results: dict[str, Any] = {
            "quote": quote.encode(), "hash_alg": "sha256", "enc_alg": "ecc", "sign_alg": "ecdsa",
            "boottime": 1, "ima_measurement_list": None, "ima_measurement_list_entry": 0,
            "mb_measurement_list": None,
        }  # fmt: skip
        if not request.partial:
            results["pubkey"] = NK_PEM
        return results

    async def provide_v(self, version: ApiVersion, encrypted_v_b64: str) -> None:
        return None

    async def notify_revocation(self, version: ApiVersion, body: Mapping[str, str]) -> None:
        return None

    async def aclose(self) -> None:
        return None


def soft_record(index: int, **changes: Any) -> AgentRecord:
    """The verifier's row for simulated agent ``index`` (its AK, ECDSA accepted)."""
    ak = identity.ak_public(identity.ak_private(index))
    return record(
        f"a{index}",
        ak_tpm=base64.b64encode(ak.to_tpm2b()).decode(),
        accept_tpm_signing_algs=("rsassa", "ecdsa"),
        **changes,
    )
