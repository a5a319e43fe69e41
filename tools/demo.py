"""The attestation story on this machine, told in plain words (run by ``./scripts/demo``).

A software TPM (swtpm) on loopback stands in for the device's TPM.  The demo walks through
what the agent and a verifier do with it today: identity (EK, EK certificate, AK), the
registrar's proof that the AK lives beside the EK (MakeCredential/ActivateCredential), and a
quote checked by our verifier code and by real Keylime 7.14.3's own quote check.
"""

from __future__ import annotations

import argparse
import dataclasses
import secrets
import string
import sys
import tempfile
from pathlib import Path

import trio
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from attest_protocol.credential import make_credential
from attest_protocol.errors import QuoteVerificationError
from attest_protocol.quote import KeylimeQuote, VerifiedQuote, encode_pcr_blob, verify_quote
from attest_protocol.tpm2.constants import alg_for_hash_name
from attest_protocol.tpm2.public import parse_tpm2b_public
from edge_agent.tpm import AkInfo, Tpm, TpmConfig
from edge_agent.tpm.pytss_backend import open_tpm
from tools import demo_push, keylime_snippets
from tools.demo_attestation import attest
from tools.demo_registration import enrolled
from tools.narrate import detail, say
from tools.swtpm import Swtpm, manufacture

# PCRs 0 (firmware), 10 (IMA) and 16 (Keylime's data PCR): the mask Keylime asks for.
DEMO_MASK = 0x10401
NONCE_ALPHABET = string.ascii_letters + string.digits
# Others may pass through the demo's directory (never list or read it): the agent runs as
# nobody once it has dropped root.
TRAVERSABLE_DIR_MODE = 0o711


def fresh_nonce() -> bytes:
    return "".join(secrets.choice(NONCE_ALPHABET) for _ in range(20)).encode()


async def show_identity(tpm: Tpm, issuer_pem: bytes) -> AkInfo:
    ek = await tpm.ek()
    say("2", f"The TPM's endorsement key (EK, {ek.encryption_alg.upper()}) is its identity.")
    cert = x509.load_der_x509_certificate(await tpm.ek_certificate())
    issuer = x509.load_pem_x509_certificate(issuer_pem)
    cert.verify_directly_issued_by(issuer)
    ek_key = parse_tpm2b_public(ek.public).public_key()
    same = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) == (
        ek_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )
    detail(f"EK certificate issued by: {cert.issuer.rfc4514_string()}")
    detail(f"signature checked against the local CA: ok; certifies this EK: {same}")
    ak = await tpm.ak()
    how = "created and saved for the next start" if ak.created else "reloaded from disk"
    say("3", f"An attestation key (AK) signs quotes; it was {how}.")
    detail(f"AK name: {ak.name.hex()}  ({ak.signing_alg}, {ak.hash_alg})")
    return ak


async def show_activation(tpm: Tpm, ak: AkInfo) -> None:
    say("4", "Registrar's challenge: a secret wrapped for this EK and this AK's name.")
    secret = secrets.token_bytes(32)
    ek = parse_tpm2b_public((await tpm.ek()).public)
    blob = make_credential(ek, ak.name, secret)
    recovered = await tpm.activate_credential(blob)
    detail(f"the TPM unwrapped it: {'the same secret' if recovered == secret else 'WRONG'}")
    detail("only a TPM holding both this EK and this AK can do that.")


async def show_quote(tpm: Tpm, ak: AkInfo) -> tuple[KeylimeQuote, bytes, VerifiedQuote]:
    nk = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    nk_pem = nk.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    await tpm.bind_data_pcr(nk_pem)
    say("5", "PCR 16 now holds the hash of the agent's payload key (Keylime's data PCR).")
    nonce = fresh_nonce()
    quote = await tpm.quote(nonce, DEMO_MASK)
    say("6", f"Quote over PCRs 0, 10, 16 with the verifier's fresh nonce {nonce.decode()}:")
    detail(f"{quote.encode()[:72]}...")
    ak_pub = parse_tpm2b_public(ak.public)
    verified = verify_quote(quote, ak_pub, nonce, hash_alg=alg_for_hash_name(ak.hash_alg))
    detail("our verifier: signature, nonce, PCR digest and selection all hold.")
    for pcr, value in sorted(verified.pcrs.items()):
        detail(f"PCR {pcr:2d} = {value.hex()}")
    return quote, nonce, verified


def show_keylime_check(quote: KeylimeQuote, nonce: bytes, ak: AkInfo) -> None:
    say("7", "Real Keylime 7.14.3 checks the same quote with its own code:")
    pem = parse_tpm2b_public(ak.public).public_key_pem()
    pcrs = keylime_snippets.keylime_checkquote(
        pem, nonce.decode(), quote.signature, quote.attest, quote.pcr_blob, ak.hash_alg
    )
    detail(f"Keylime accepted it and read PCRs {sorted(pcrs)}.")


def show_forgeries(quote: KeylimeQuote, nonce: bytes, ak: AkInfo, good: VerifiedQuote) -> None:
    say("8", "Forged evidence is refused, each for its own reason:")
    ak_pub = parse_tpm2b_public(ak.public)
    sig = bytearray(quote.signature)
    sig[-1] ^= 1
    pcr10 = good.pcrs[10]
    changed = {**good.pcrs, 10: pcr10[:-1] + bytes([pcr10[-1] ^ 1])}
    blob = encode_pcr_blob(good.hash_alg, changed)
    cases = {
        "one flipped signature bit": (dataclasses.replace(quote, signature=bytes(sig)), nonce),
        "a replayed quote for another nonce": (quote, fresh_nonce()),
        "a PCR value changed after quoting": (dataclasses.replace(quote, pcr_blob=blob), nonce),
    }
    for what, (forged, expected_nonce) in cases.items():
        try:
            verify_quote(forged, ak_pub, expected_nonce, previous_clock=good.attest.clock_info)
        except QuoteVerificationError as exc:
            detail(f"{what}: rejected ({type(exc).__name__}: {exc})")
        else:
            raise SystemExit(f"demo failure: {what} was accepted")


async def talk_to_tpm(
    tcti: str, data_dir: Path, issuer_pem: bytes
) -> tuple[bytes, AkInfo, KeylimeQuote, bytes, VerifiedQuote]:
    tpm = await open_tpm(TpmConfig(tcti=tcti, data_dir=data_dir))
    try:
        ak = await show_identity(tpm, issuer_pem)
        await show_activation(tpm, ak)
        quote, nonce, verified = await show_quote(tpm, ak)
        ek_public = (await tpm.ek()).public
    finally:
        await tpm.aclose()
    return ek_public, ak, quote, nonce, verified


def run(workdir: Path) -> None:
    say("1", "Manufacturing a software TPM with an EK certificate from its own local CA...")
    template = manufacture(workdir / "manufactured")
    with Swtpm(template, workdir / "swtpm", copy=False) as swtpm:
        detail(f"swtpm listening on {swtpm.tcti}")
        issuer_pem = template.issuer_cert.read_bytes()
        ek_public, ak, quote, nonce, verified = trio.run(
            talk_to_tpm, swtpm.tcti, workdir / "agent-data", issuer_pem
        )
        show_keylime_check(quote, nonce, ak)
        show_forgeries(quote, nonce, ak, verified)
        with enrolled(workdir, swtpm.tcti, template.ca_dir, ek_public, ak.public) as enrolment:
            attest(enrolment, swtpm.ctrl_port)
    # Push mode (API 3.0) on a fresh copy of the TPM; skipped with a reason when unavailable.
    demo_push.run(workdir)
    say("done", "The TPM's identity is enrolled, the verifier attests it continuously, and")
    detail("a change to a measured PCR is caught on the next quote.")


def main() -> int:
    parser = argparse.ArgumentParser(prog="demo", description=__doc__)
    parser.add_argument("--state", type=Path, help="keep the demo's files here (default: temp)")
    args = parser.parse_args()
    if args.state is not None:
        args.state.mkdir(parents=True, exist_ok=True)
        run(args.state.resolve())
        return 0
    with tempfile.TemporaryDirectory(prefix="limelet-demo-") as tmp:
        # The agent drops root to nobody and must still reach its data dir inside this one.
        Path(tmp).chmod(TRAVERSABLE_DIR_MODE)
        run(Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
