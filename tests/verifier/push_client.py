"""A small push agent for the tests: software AK and PCRs speaking Keylime's API 3.0.

It makes what rust-keylime's ``keylime_push_model_agent`` sends (keylime-push-model-agent/
src/struct_filler.rs, keylime/src/tpm.rs): a TPM2_Certify of the AK by itself over the
session challenge, capabilities, and a TPM2_Quote with the tpm2-tools PCR blob and the IMA
lines from the requested offset.  The AK is a ``cryptography`` key (RSA or ECDSA P-256) and
PCR 10 is extended with attest_protocol's IMA entries, so the verifier's replay must match.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from attest_protocol.ima import format_ima_line
from attest_protocol.quote import encode_pcr_blob
from attest_protocol.tpm2.attest import ClockInfo, TpmsAttest
from attest_protocol.tpm2.constants import TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE, TpmAlg
from attest_protocol.tpm2.marshal import Writer
from attest_protocol.tpm2.pcr import PcrSelection
from attest_protocol.tpm2.public import TpmPublic
from attest_protocol.tpm2.signature import TpmtSignature
from tests.unit.test_quote import ak_public
from tools.ima_emulator import make_entry

PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]
JSON_API = {"Content-Type": "application/vnd.api+json", "Accept": "application/vnd.api+json"}
BOOT_TIME = "2026-12-03T13:11:57Z"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass
class SoftTpm:
    """An AK and a SHA-256 PCR bank; ``clock`` advances with every signed structure."""

    key: PrivateKey
    pcrs: dict[int, bytes] = field(default_factory=lambda: {i: bytes(32) for i in range(24)})
    clock: int = 100_000
    ima_lines: list[str] = field(default_factory=list)

    @property
    def public(self) -> TpmPublic:
        return ak_public(self.key)

    @property
    def ak_b64(self) -> str:
        return b64(self.public.to_tpm2b())

    def extend(self, pcr: int, digest: bytes) -> None:
        self.pcrs[pcr] = hashlib.sha256(self.pcrs[pcr] + digest).digest()

    def measure(self, path: str, content: bytes) -> None:
        entry = make_entry(path, hashlib.sha256(content).digest())
        self.ima_lines.append(format_ima_line(entry))
        self.extend(10, entry.extend_digest(TpmAlg.SHA256))

    def sign(self, message: bytes) -> bytes:
        if isinstance(self.key, rsa.RSAPrivateKey):
            sig = self.key.sign(message, padding.PKCS1v15(), hashes.SHA256())
            return TpmtSignature(TpmAlg.RSASSA, TpmAlg.SHA256, sig).encode()
        r, s = decode_dss_signature(self.key.sign(message, ec.ECDSA(hashes.SHA256())))
        return TpmtSignature(
            TpmAlg.ECDSA, TpmAlg.SHA256, r=r.to_bytes(32, "big"), s=s.to_bytes(32, "big")
        ).encode()

    def _clock_info(self) -> bytes:
        self.clock += 1000
        return Writer().u64(self.clock).u32(3).u32(0).u8(1).getvalue()

    def certify(self, challenge: bytes) -> tuple[bytes, bytes]:
        name = self.public.name()
        w = Writer().u32(TPM_GENERATED_VALUE).u16(0x8017).tpm2b(name).tpm2b(challenge)
        w.put(self._clock_info()).u64(0x2019102300163636).tpm2b(name).tpm2b(name)
        message = w.getvalue()
        return message, self.sign(message)

    def quote(self, challenge: bytes, pcrs: list[int]) -> tuple[bytes, bytes, bytes]:
        selection = PcrSelection.single(TpmAlg.SHA256, pcrs)
        digest = hashlib.sha256(b"".join(self.pcrs[p] for _, p in selection.ordered())).digest()
        self.clock += 1000
        clock = ClockInfo(self.clock, 3, 0, True)
        attest = TpmsAttest(
            TPM_GENERATED_VALUE,
            TPM_ST_ATTEST_QUOTE,
            self.public.name(),
            challenge,
            clock,
            0x2019102300163636,
            selection,
            digest,
        ).encode()
        blob = encode_pcr_blob(TpmAlg.SHA256, {p: self.pcrs[p] for p in pcrs})
        return attest, self.sign(attest), blob


Send = Callable[[str, str, Mapping[str, Any], Mapping[str, str]], Awaitable[tuple[int, Any, Any]]]


def session_request(agent_id: str) -> dict[str, Any]:
    pop = {"authentication_class": "pop", "authentication_type": "tpm_pop"}
    attrs = {"agent_id": agent_id, "authentication_supported": [pop]}
    return {"data": {"type": "session", "attributes": attrs}}


def proof_request(agent_id: str, session_id: str, message: bytes, sig: bytes) -> dict[str, Any]:
    pop = {"authentication_class": "pop", "authentication_type": "tpm_pop"}
    provided = [{**pop, "data": {"message": b64(message), "signature": b64(sig)}}]
    attrs = {"agent_id": agent_id, "authentication_provided": provided}
    return {"data": {"type": "session", "id": session_id, "attributes": attrs}}


def capabilities(tpm: SoftTpm, boot_time: str = BOOT_TIME) -> dict[str, Any]:
    key_alg = "rsa" if isinstance(tpm.key, rsa.RSAPrivateKey) else "ecc"
    scheme = "rsassa" if key_alg == "rsa" else "ecdsa"
    key = {
        "key_class": "asymmetric",
        "key_algorithm": key_alg,
        "key_size": 2048 if key_alg == "rsa" else 256,
        "server_identifier": "ak",
        "local_identifier": tpm.public.name().hex(),
        "public": tpm.ak_b64,
        "allowable_hash_algorithms": ["sha256"],
        "allowable_signature_schemes": [scheme],
    }
    quote_caps = {
        "component_version": "2.0",
        "hash_algorithms": ["sha256"],
        "signature_schemes": ["ecdsa", "rsassa"],
        "available_subjects": {"sha256": list(range(24))},
        "certification_keys": [key],
    }
    ima_caps = {
        "entry_count": len(tpm.ima_lines),
        "supports_partial_access": True,
        "appendable": True,
        "formats": ["text/plain"],
    }
    supported = [
        {
            "evidence_class": "certification",
            "evidence_type": "tpm_quote",
            "capabilities": quote_caps,
        },
        {"evidence_class": "log", "evidence_type": "ima_log", "capabilities": ima_caps},
    ]
    attrs = {"evidence_supported": supported, "system_info": {"boot_time": boot_time}}
    return {"data": {"type": "attestation", "attributes": attrs}}


def evidence(tpm: SoftTpm, requested: list[dict[str, Any]]) -> dict[str, Any]:
    """Evidence for exactly what was requested, in its order."""
    collected = []
    for item in requested:
        chosen = item["chosen_parameters"]
        if item["evidence_type"] == "tpm_quote":
            pcrs = chosen["selected_subjects"]["sha256"]
            message, sig, blob = tpm.quote(base64.b64decode(chosen["challenge"]), pcrs)
            data: dict[str, Any] = {
                "message": b64(message),
                "signature": b64(sig),
                "subject_data": b64(blob),
            }
        else:
            lines = tpm.ima_lines[chosen["starting_offset"] :]
            text = "".join(line + "\n" for line in lines)
            data = {"entries": text, "entry_count": len(lines)}
        collected.append({**item, "data": data})
    return {"data": {"type": "attestation", "attributes": {"evidence_collected": collected}}}


@dataclass
class PushClient:
    """Drives one attestation round over ``send(method, path, body, headers)``."""

    send: Send
    agent_id: str
    tpm: SoftTpm
    token: str = ""

    async def authenticate(self) -> int:
        status, body, _ = await self.send(
            "POST", "/v3.0/sessions", session_request(self.agent_id), JSON_API
        )
        if status != 200:
            return status
        session = body["data"]
        challenge = base64.b64decode(
            session["attributes"]["authentication_requested"][0]["chosen_parameters"]["challenge"]
        )
        message, sig = self.tpm.certify(challenge)
        proof = proof_request(self.agent_id, session["id"], message, sig)
        status, body, _ = await self.send(
            "PATCH", f"/v3.0/sessions/{session['id']}", proof, JSON_API
        )
        if status == 200 and body["data"]["attributes"]["evaluation"] == "pass":
            self.token = body["data"]["attributes"]["token"]
        return status

    def headers(self) -> dict[str, str]:
        return {**JSON_API, "Authorization": f"Bearer {self.token}"}

    async def negotiate(self) -> tuple[int, Any, Any]:
        path = f"/v3.0/agents/{self.agent_id}/attestations"
        return await self.send("POST", path, capabilities(self.tpm), self.headers())

    async def attest(self) -> tuple[int, Any]:
        """One POST + PATCH; the PATCH status and body (or the POST's on refusal)."""
        status, body, location = await self.negotiate()
        if status != 201:
            return status, body
        requested = body["data"]["attributes"]["evidence_requested"]
        status, body, _ = await self.send(
            "PATCH", location, evidence(self.tpm, requested), self.headers()
        )
        return status, body
