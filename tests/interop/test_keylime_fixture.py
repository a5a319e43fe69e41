"""The real-Keylime fixture works: services answer, the tenant runs, snippets reach tpm_util.

The TPM structures below are built by hand from TCG TPM 2.0 Part 2 (Structures) so that these
tests depend on nothing else in limelet:

* TPM2B_PUBLIC of an RSA-2048 EK: the TCG EK Credential Profile template L-1 (section 2.2.1.4):
  type RSA, nameAlg SHA-256, objectAttributes 0x000300B2, the PolicySecret(TPM_RH_ENDORSEMENT)
  authPolicy, symmetric AES-128-CFB, scheme NULL, 2048 bits, exponent 0 (= 65537).
* TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE (Part 2, 10.12.12) with a TPMS_QUOTE_INFO (10.12.4).
* TPMT_SIGNATURE with TPMS_SIGNATURE_RSASSA (11.3.4).
* The PCR blob in the layout tpm2-tools writes and Keylime parses (keylime/tpm/tpm_util.py,
  ``__get_pcrs_from_blob``): little-endian TPML_PCR_SELECTION padded to 16 selections, then
  TPML_DIGESTs of 8 slots each, every slot a size and 64 bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import struct
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tests.fixtures.keylime import (
    KeylimeServices,
    KeylimeSnippetError,
    KeylimeStartupError,
    keylime_checkquote,
    keylime_makecredential,
    run_in_keylime,
)
from tools.keylime_config import COMPONENTS, CONFIG_VERSION, component_options
from tools.keylime_services import start_keylime

pytestmark = pytest.mark.interop

# The REST API version Keylime 7.14.3 reports as current (keylime/api_version.py).
KEYLIME_CURRENT_API = "2.6"

TPM_ALG_RSA = 0x0001
TPM_ALG_SHA256 = 0x000B
TPM_ALG_AES = 0x0006
TPM_ALG_CFB = 0x0043
TPM_ALG_NULL = 0x0010
TPM_ALG_RSASSA = 0x0014
TPM_ALG_RSAPSS = 0x0016
TPM_GENERATED_VALUE = 0xFF544347
TPM_ST_ATTEST_QUOTE = 0x8018
# fixedTPM | fixedParent | sensitiveDataOrigin | adminWithPolicy | restricted | decrypt
EK_OBJECT_ATTRIBUTES = 0x000300B2
# PolicySecret(TPM_RH_ENDORSEMENT), EK Credential Profile 2.0, B.3.3.
EK_AUTH_POLICY = bytes.fromhex("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa")
CREDENTIAL_FILE_MAGIC = 0xBADCC0DE  # tpm2-tools' makecredential output header


def tpm2b(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def rsa_ek_tpm2b_public(key: rsa.RSAPublicKey) -> bytes:
    modulus = key.public_numbers().n.to_bytes(key.key_size // 8, "big")
    tpmt_public = (
        struct.pack(">HHI", TPM_ALG_RSA, TPM_ALG_SHA256, EK_OBJECT_ATTRIBUTES)
        + tpm2b(EK_AUTH_POLICY)
        + struct.pack(">HHHHHI", TPM_ALG_AES, 128, TPM_ALG_CFB, TPM_ALG_NULL, key.key_size, 0)
        + tpm2b(modulus)
    )
    return tpm2b(tpmt_public)


def sha256_name(public_area: bytes) -> bytes:
    """A TPM2B_NAME's contents: nameAlg then the digest of the public area."""
    return struct.pack(">H", TPM_ALG_SHA256) + hashlib.sha256(public_area).digest()


def pcr_select_bytes(pcrs: list[int]) -> bytes:
    mask = sum(1 << pcr for pcr in pcrs)
    return mask.to_bytes(3, "little")


def quote_blob(nonce: bytes, pcrs: dict[int, bytes]) -> bytes:
    pcr_digest = hashlib.sha256(b"".join(pcrs[i] for i in sorted(pcrs))).digest()
    selection = struct.pack(">IHB", 1, TPM_ALG_SHA256, 3) + pcr_select_bytes(list(pcrs))
    clock_info = struct.pack(">QIIB", 123456, 1, 0, 1)
    return (
        struct.pack(">IH", TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE)
        + tpm2b(sha256_name(b"signing key"))  # qualifiedSigner
        + tpm2b(nonce)  # extraData
        + clock_info
        + struct.pack(">Q", 0x20240101)  # firmwareVersion
        + selection
        + tpm2b(pcr_digest)
    )


def rsassa_signature(key: rsa.RSAPrivateKey, quote: bytes) -> bytes:
    signature = key.sign(quote, padding.PKCS1v15(), hashes.SHA256())
    return struct.pack(">HH", TPM_ALG_RSASSA, TPM_ALG_SHA256) + tpm2b(signature)


def tpm2_tools_pcr_blob(pcrs: dict[int, bytes]) -> bytes:
    selections = struct.pack("<HB", TPM_ALG_SHA256, 3) + pcr_select_bytes(list(pcrs)) + bytes(2)
    selections += (struct.pack("<HB", 0, 0) + bytes(5)) * 15
    values = [pcrs[i] for i in sorted(pcrs)]
    assert len(values) <= 8, "one TPML_DIGEST holds at most 8 digests"
    slots = b"".join(struct.pack("<H", len(v)) + v.ljust(64, b"\0") for v in values)
    slots += (struct.pack("<H", 0) + bytes(64)) * (8 - len(values))
    return struct.pack("<I", 1) + selections + struct.pack("<II", 1, len(values)) + slots


@pytest.fixture(scope="module")
def aik() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# --- the running services --------------------------------------------------------------------


def test_verifier_answers_version_over_mtls(keylime_services: KeylimeServices) -> None:
    with httpx.Client(verify=keylime_services.ssl_context()) as client:
        response = client.get(f"{keylime_services.verifier_url}/version")
    assert response.status_code == 200
    results = response.json()["results"]
    assert results["current_version"] == KEYLIME_CURRENT_API
    assert KEYLIME_CURRENT_API in results["supported_versions"]


def test_registrar_answers_version_on_both_ports(keylime_services: KeylimeServices) -> None:
    with httpx.Client(verify=keylime_services.ssl_context()) as client:
        plain = client.get(f"{keylime_services.registrar_url}/version")
        mtls = client.get(f"{keylime_services.registrar_tls_url}/version")
    for response in (plain, mtls):
        assert response.status_code == 200
        assert response.json()["results"]["current_version"] == KEYLIME_CURRENT_API


def test_tenant_reglist_reports_what_the_registrar_holds(
    keylime_services: KeylimeServices,
) -> None:
    """The session's registrar is shared, so other tests may have registered agents: the
    tenant's listing must equal the registrar's own answer over mTLS."""
    with httpx.Client(verify=keylime_services.ssl_context()) as client:
        direct = client.get(f"{keylime_services.registrar_tls_url}/v2.1/agents/")
    done = keylime_services.run_tenant("-c", "reglist")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    # The tenant logs the registrar's answer as a JSON line of its own.
    listings = [json.loads(line) for line in output.splitlines() if line.startswith('{"uuids"')]
    assert listings == [direct.json()["results"]], output


def test_keylime_reads_our_configs(keylime_services: KeylimeServices) -> None:
    script = """\
import logging, sys
from keylime import config, keylime_logging
from keylime.common.version import str_to_version
result = {"files": {}, "versions": {}}
for component in payload["components"]:
    parser = config.get_config(component)
    result["files"][component] = {s: dict(parser.items(s)) for s in parser.sections()}
    result["versions"][component] = list(str_to_version(config.get(component, "version")))
result["typed"] = [
    config.getint("verifier", "port"),
    config.getboolean("tenant", "require_ek_cert"),
    config.getlist("tenant", "accept_tpm_hash_algs"),
    config.getlist("verifier", "enabled_revocation_notifications", section="revocations"),
]
handler = logging.getLogger().handlers[0]
result["log_stream_is_stderr"] = getattr(handler, "stream", None) is sys.stderr
"""
    services = keylime_services
    got = run_in_keylime(script, {"components": list(COMPONENTS)}, env=services.env)
    for component in COMPONENTS:
        assert got["versions"][component] == [int(p) for p in CONFIG_VERSION.split(".")]
        written = component_options(component, services.layout, services.settings)
        assert got["files"][component] == written, component
    assert got["typed"] == [
        services.verifier_port,
        False,
        ["sha512", "sha384", "sha256"],
        ["agent"],
    ]
    assert got["log_stream_is_stderr"] is True


def test_env_overrides_one_tenant_option(keylime_services: KeylimeServices) -> None:
    # The recipe the fixture documents for per-call tenant settings on the shared instance.
    script = """\
from keylime import config
result = {"v": config.getboolean("tenant", "require_ek_cert")}
"""
    env = {**keylime_services.env, "KEYLIME_TENANT_REQUIRE_EK_CERT": "True"}
    assert run_in_keylime(script, {}, env=env) == {"v": True}
    assert run_in_keylime(script, {}, env=keylime_services.env) == {"v": False}


# --- tpm_util through run_in_keylime --------------------------------------------------------


def test_checkquote_accepts_a_well_formed_quote(aik: rsa.RSAPrivateKey) -> None:
    nonce = "limelet-nonce-1"
    pcrs = {0: bytes(32), 10: hashlib.sha256(b"ima").digest()}
    quote = quote_blob(nonce.encode(), pcrs)
    got = keylime_checkquote(
        pem(aik), nonce, rsassa_signature(aik, quote), quote, tpm2_tools_pcr_blob(pcrs), "sha256"
    )
    assert got == {index: value.hex() for index, value in pcrs.items()}


def test_checkquote_rejects_a_wrong_nonce(aik: rsa.RSAPrivateKey) -> None:
    pcrs = {0: bytes(32)}
    quote = quote_blob(b"the nonce the TPM saw", pcrs)
    with pytest.raises(KeylimeSnippetError) as caught:
        keylime_checkquote(
            pem(aik),
            "another nonce",
            rsassa_signature(aik, quote),
            quote,
            tpm2_tools_pcr_blob(pcrs),
            "sha256",
        )
    assert "nonce from the attestation differs" in caught.value.message


@pytest.mark.parametrize(
    ("sigblob", "exc_type", "message"),
    [
        # RSAPSS is not accepted for RSA AKs.
        (
            struct.pack(">HH", TPM_ALG_RSAPSS, TPM_ALG_SHA256) + tpm2b(bytes(256)),
            "ValueError",
            "Unsupported quote signature algorithm",
        ),
        # Right layout, random signature bytes: cryptography's InvalidSignature has no text.
        (
            struct.pack(">HH", TPM_ALG_RSASSA, TPM_ALG_SHA256) + tpm2b(os.urandom(256)),
            "InvalidSignature",
            "",
        ),
    ],
)
def test_checkquote_rejects_garbage(
    aik: rsa.RSAPrivateKey, sigblob: bytes, exc_type: str, message: str
) -> None:
    garbage = b"\x00not a TPMS_ATTEST"
    with pytest.raises(KeylimeSnippetError) as caught:
        keylime_checkquote(pem(aik), "nonce", sigblob, garbage, garbage, "sha256")
    assert caught.value.exc_type == exc_type
    assert message in caught.value.message
    assert "tpm_util.py" in caught.value.traceback


def kdfa_sha256(key: bytes, label: bytes, context_u: bytes, context_v: bytes, bits: int) -> bytes:
    """KDFa, TCG TPM 2.0 Part 1 section 11.4.10.2 (SP 800-108 counter mode, HMAC-SHA256)."""
    out = b""
    counter = 0
    while len(out) * 8 < bits:
        counter += 1
        message = struct.pack(">I", counter) + label + b"\0" + context_u + context_v
        out += hmac.new(key, message + struct.pack(">I", bits), hashlib.sha256).digest()
    return out[: bits // 8]


def aes_cfb_decrypt(key: bytes, data: bytes) -> bytes:
    """AES-CFB with a zero IV (Part 1, 11.4.6.3), built on ECB: cryptography 50 moved its CFB
    mode to the 'decrepit' package and warns on the old name."""
    block = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305 - one block as CFB's keystream
    previous, plain = bytes(16), b""
    for start in range(0, len(data), 16):
        chunk = data[start : start + 16]
        stream = block.update(previous)
        plain += bytes(c ^ k for c, k in zip(chunk, stream))
        previous = chunk
    return plain


def activate_credential(blob: bytes, ek: rsa.RSAPrivateKey, name: bytes) -> bytes:
    """Software TPM2_ActivateCredential (Part 1, 24.4-24.5) on tpm2-tools' credential file."""
    magic, version = struct.unpack_from(">II", blob)
    assert (magic, version) == (CREDENTIAL_FILE_MAGIC, 1)
    (id_size,) = struct.unpack_from(">H", blob, 8)
    id_object = blob[10 : 10 + id_size]
    (secret_size,) = struct.unpack_from(">H", blob, 10 + id_size)
    secret = blob[12 + id_size :]
    assert len(secret) == secret_size == 256
    label = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), b"IDENTITY\0")
    seed = ek.decrypt(secret, label)
    (integrity_size,) = struct.unpack_from(">H", id_object)
    integrity, enc_identity = id_object[2 : 2 + integrity_size], id_object[2 + integrity_size :]
    hmac_key = kdfa_sha256(seed, b"INTEGRITY", b"", b"", 256)
    expected = hmac.new(hmac_key, enc_identity + name, hashlib.sha256).digest()
    assert hmac.compare_digest(integrity, expected)
    sym_key = kdfa_sha256(seed, b"STORAGE", name, b"", 128)
    plain = aes_cfb_decrypt(sym_key, enc_identity)
    (size,) = struct.unpack_from(">H", plain)
    return plain[2 : 2 + size]


def test_makecredential_wraps_the_challenge_for_our_ek() -> None:
    ek = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ek_public = rsa_ek_tpm2b_public(ek.public_key())
    # size, type + nameAlg + attributes, authPolicy, AES-128-CFB + NULL + keyBits + exponent, n
    assert len(ek_public) == 2 + (2 + 2 + 4) + (2 + 32) + (6 + 2 + 2 + 4) + (2 + 256)
    ak_name = sha256_name(b"stand-in for an AK's TPMT_PUBLIC")
    challenge = os.urandom(32)
    blob = keylime_makecredential(ek_public, challenge, ak_name)
    assert blob[:4] == bytes.fromhex("badcc0de")
    assert activate_credential(blob, ek, ak_name) == challenge


# --- the fixture's own life cycle -----------------------------------------------------------


def instance_pids(keylime_dir: Path) -> list[int]:
    """Live processes whose environment names this instance's KEYLIME_DIR."""
    marker = f"KEYLIME_DIR={keylime_dir}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # gone, or a kernel thread
            continue
        if marker in environ:
            pids.append(int(entry.name))
    return pids


def test_services_are_stopped_when_the_body_raises(keylime_venv: Path, tmp_path: Path) -> None:
    seen: list[int] = []
    with pytest.raises(RuntimeError, match="test body failed"):
        with start_keylime(tmp_path) as services:
            seen = instance_pids(services.layout.keylime_dir)
            raise RuntimeError("test body failed")
    # Parent, forked worker and shared-memory manager for each of the two services.
    assert len(seen) >= 4
    assert instance_pids(tmp_path / "keylime") == []


def test_startup_failure_shows_the_log_and_stops_the_verifier(
    keylime_venv: Path, tmp_path: Path
) -> None:
    broken = {"registrar": {"tls_dir": "no-such-dir", "server_cert": "missing.crt"}}
    with pytest.raises(KeylimeStartupError) as caught:
        with start_keylime(tmp_path, overrides=broken, startup_timeout=30):
            pytest.fail("the registrar cannot start without its certificate")
    assert caught.value.service == "keylime_registrar"
    # The registrar's traceback, from the log tail.
    assert "FileNotFoundError" in str(caught.value)
    assert instance_pids(tmp_path / "keylime") == []
