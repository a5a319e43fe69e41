"""The fleet simulator's quotes pass real Keylime 7.14.3's own quote check, fetched over mTLS.

bench/fleet makes every quote in software; if its encoding drifted from what a TPM and a real
agent produce, the benchmark would measure a verifier rejecting garbage.  Here each simulated
agent is asked for a quote exactly as a verifier asks (``GET /v2.1/quotes/integrity`` with a
20-character nonce and a mask, client certificate presented, the agent's certificate pinned)
and ``keylime.tpm.tpm_util.checkquote`` checks it in Keylime's own virtualenv.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from attest_protocol.quote import KeylimeQuote, verify_quote
from attest_protocol.tpm2.constants import TpmAlg
from bench.fleet import identity
from bench.fleet.fleet import Fleet
from bench.fleet.quote import data_pcr
from tests.cv_ca import TlsFiles, make_tls_files
from tools.keylime_snippets import KeylimeSnippetError, keylime_checkquote

pytestmark = [pytest.mark.interop]

AGENTS = 3
NONCE = "fleetN0nce4Keylime20"
MASK = "0x10401"  # PCRs 0, 10 and 16, as with a runtime policy and the data PCR


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path / "ca")


@pytest.fixture
def fleet(tmp_path: Path, tls: TlsFiles) -> Iterator[Fleet]:
    running = Fleet.start(AGENTS, 2, tmp_path / "fleet", [tls.ca_cert])
    try:
        yield running
    finally:
        running.close()


def _client(fleet: Fleet, tls: TlsFiles, *, with_cert: bool = True) -> httpx.Client:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # the pinned certificate is the identity, as in Keylime
    ctx.load_verify_locations(cadata=fleet.material.cert_pem())
    if with_cert:
        ctx.load_cert_chain(str(tls.client_cert), str(tls.client_key))
    return httpx.Client(verify=ctx, timeout=30.0)


def _ask(client: httpx.Client, index: int, nonce: str) -> dict[str, str]:
    url = f"https://{identity.agent_ip(index)}:{identity.AGENT_PORT}/v2.1/quotes/integrity"
    response = client.get(url, params={"nonce": nonce, "mask": MASK, "partial": "0"})
    assert response.status_code == 200, response.text
    results: dict[str, str] = response.json()["results"]
    return results


def test_keylime_accepts_every_simulated_agent(
    keylime_venv: Path, fleet: Fleet, tls: TlsFiles
) -> None:
    with _client(fleet, tls) as client:
        answers = [_ask(client, index, NONCE) for index in range(AGENTS)]
    for index, results in enumerate(answers):
        assert (results["hash_alg"], results["sign_alg"]) == ("sha256", "ecdsa")
        quote = KeylimeQuote.parse(results["quote"])
        ak = identity.ak_public(identity.ak_private(index))
        pcrs = keylime_checkquote(
            ak.public_key_pem(), NONCE, quote.signature, quote.attest, quote.pcr_blob, "sha256"
        )
        assert pcrs == {0: "00" * 32, 10: "00" * 32, 16: data_pcr(results["pubkey"]).hex()}
        ours = verify_quote(quote, ak, NONCE.encode(), hash_alg=TpmAlg.SHA256)
        assert {k: v.hex() for k, v in ours.pcrs.items()} == pcrs


def test_keylime_rejects_a_quote_for_another_nonce_or_agent(
    keylime_venv: Path, fleet: Fleet, tls: TlsFiles
) -> None:
    with _client(fleet, tls) as client:
        results = _ask(client, 0, NONCE)
    quote = KeylimeQuote.parse(results["quote"])
    own = identity.ak_public(identity.ak_private(0)).public_key_pem()
    other = identity.ak_public(identity.ak_private(1)).public_key_pem()
    for pem, nonce in ((own, "another20charsnonce1"), (other, NONCE)):
        with pytest.raises(KeylimeSnippetError):
            keylime_checkquote(pem, nonce, quote.signature, quote.attest, quote.pcr_blob, "sha256")


def test_agent_refuses_a_client_without_certificate(fleet: Fleet, tls: TlsFiles) -> None:
    with _client(fleet, tls, with_cert=False) as client, pytest.raises(httpx.TransportError):
        _ask(client, 0, NONCE)


def test_agent_answers_bad_requests_with_400(fleet: Fleet, tls: TlsFiles) -> None:
    url = f"https://{identity.agent_ip(2)}:{identity.AGENT_PORT}/v2.1/quotes/integrity"
    with _client(fleet, tls) as client:
        assert client.get(url, params={"mask": MASK}).status_code == 400
        assert client.get(url.replace("integrity", "nothing")).status_code == 404
        body = client.get(url, params={"nonce": NONCE, "mask": MASK}).json()
    assert base64.b64decode(body["results"]["quote"][1:].split(":")[0])
