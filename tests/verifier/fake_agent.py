"""An honest fake agent: a real HTTPS server speaking the Keylime agent API on a real TPM.

It answers ``/version``, ``quotes/identity``, ``quotes/integrity``, ``keys/ukey``,
``keys/vkey`` and ``keys/verify`` (rust-keylime keylime-agent/src/quotes_handler.rs and
keys_handler.rs) with quotes made by swtpm through edge_agent.tpm, PCR 16 bound to its NK
public key.  It requires a client certificate from the test CA, as an agent with
``enable_agent_mtls`` does.  Knobs let a test break it on purpose: ``outage`` answers 503,
``forge`` rewrites each ``quotes/integrity`` answer (tests/verifier/test_forged_evidence_swtpm.py
forges every kind of bad evidence Keylime must catch with it).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Optional

import trio
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from quart import Response, request
from quart_trio import QuartTrio

from attest_protocol.envelope import Envelope
from attest_protocol.tpm2.pcr import parse_mask
from edge_agent.keys.mtls import build_certificate
from edge_agent.tpm.protocol import Tpm
from service_kit.listen import bind, mtls_config, serve_app
from service_kit.web import respond
from tests.cv_ca import TlsFiles
from tests.verifier.support import LOOPBACK

AGENT_VERSIONS = ("2.1", "2.2")
FAKE_AGENT_BACKLOG = 16  # a handful of verifier connections at most
# A forgery: (the honest ``results`` of quotes/integrity, the request's query) -> what to send.
Forgery = Callable[[dict[str, Any], dict[str, str]], Awaitable[dict[str, Any]]]
_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303 - Keylime


@dataclass
class FakeAgentState:
    """What the fake saw and how it misbehaves; tests read and set these."""

    outage: bool = False
    integrity_requests: list[dict[str, str]] = field(default_factory=list)
    identity_requests: int = 0
    u: Optional[bytes] = None
    v: Optional[bytes] = None
    revocations: list[dict[str, Any]] = field(default_factory=list)
    forge: Optional[Forgery] = None  # None: honest


@dataclass
class FakeAgent:
    tpm: Tpm
    nk: rsa.RSAPrivateKey
    cert_pem: str
    key_pem: bytes
    ak_public: bytes
    hash_alg: str
    sign_alg: str
    enc_alg: str
    state: FakeAgentState = field(default_factory=FakeAgentState)
    port: int = 0
    ima_log: Optional[Path] = None  # ascii_runtime_measurements, e.g. from tools.ima_emulator
    mb_log: Optional[bytes] = None  # binary_bios_measurements

    @property
    def nk_public_pem(self) -> str:
        return (
            self.nk.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )

    @classmethod
    async def create(cls, tpm: Tpm, agent_id: str = "fake-agent") -> FakeAgent:
        ak = await tpm.ak()
        ek = await tpm.ek()
        nk = rsa.generate_private_key(65537, 2048)
        # Self-signed, as rust-keylime and edge_agent make it; the registrar publishes it.
        tls_key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = build_certificate(tls_key, agent_id, LOOPBACK, now)
        key_pem = tls_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        agent = cls(
            tpm, nk, cert.public_bytes(serialization.Encoding.PEM).decode("ascii"), key_pem,
            ak.public, ak.hash_alg, ak.signing_alg, ek.encryption_alg,
        )  # fmt: skip
        await tpm.bind_data_pcr(agent.nk_public_pem.encode("ascii"))
        return agent

    async def _quote(self, nonce: str, mask: int, *, with_pubkey: bool) -> dict[str, Any]:
        quote = await self.tpm.quote(nonce.encode("utf-8"), mask, self.hash_alg)
        results: dict[str, Any] = {
            "quote": quote.encode(),
            "hash_alg": self.hash_alg,
            "enc_alg": self.enc_alg,
            "sign_alg": self.sign_alg,
        }
        if with_pubkey:
            results["pubkey"] = self.nk_public_pem
        return results

    def _ima_slice(self, entry: int) -> tuple[int, Optional[str]]:
        """The log from ``entry`` on (from 0 when past the end: rust-keylime's behaviour)."""
        if self.ima_log is None:
            return 0, None
        lines = self.ima_log.read_text(encoding="utf-8").splitlines(keepends=True)
        if entry > len(lines):
            entry = 0
        return entry, "".join(lines[entry:])

    def app(self) -> QuartTrio:
        app = QuartTrio("fake-agent")
        state = self.state

        def envelope(code: int, status: str, results: Optional[dict[str, Any]] = None) -> Response:
            return respond(Envelope(code, status, results or {}))

        @app.before_request
        async def outage() -> Optional[Response]:
            return envelope(503, "Service Unavailable") if state.outage else None

        @app.get("/version")
        async def version() -> Response:
            return envelope(
                200,
                "Success",
                {
                    "supported_version": AGENT_VERSIONS[-1],
                    "supported_versions": list(AGENT_VERSIONS),
                },
            )

        @app.get("/<ver>/quotes/identity")
        async def identity(ver: str) -> Response:
            state.identity_requests += 1
            nonce = request.args["nonce"]
            return envelope(200, "Success", await self._quote(nonce, 1 << 16, with_pubkey=True))

        @app.get("/<ver>/quotes/integrity")
        async def integrity(ver: str) -> Response:
            args = dict(request.args)
            state.integrity_requests.append(args)
            mask = parse_mask(args["mask"])
            results = await self._quote(args["nonce"], mask, with_pubkey=args.get("partial") == "0")
            entry, ima_list = self._ima_slice(int(args.get("ima_ml_entry", "0")))
            results.update(
                {
                    "boottime": 1,
                    "ima_measurement_list": ima_list,
                    "ima_measurement_list_entry": entry,
                    "mb_measurement_list": None
                    if self.mb_log is None
                    else base64.b64encode(self.mb_log).decode("ascii"),
                }
            )
            if state.forge is not None:
                results = await state.forge(results, args)
            return envelope(200, "Success", results)

        @app.post("/<ver>/keys/<which>")
        async def keys(ver: str, which: str) -> Response:
            body = json.loads(await request.get_data())
            key = self.nk.decrypt(base64.b64decode(body["encrypted_key"]), _OAEP)
            if which == "ukey":
                state.u = key
            elif which == "vkey":
                state.v = key
            else:
                return envelope(404, "Not Found")
            return envelope(200, "Success")

        @app.post("/<ver>/notifications/revocation")
        async def revocation(ver: str) -> Response:
            state.revocations.append(json.loads(await request.get_data()))
            return envelope(200, "Success")

        @app.get("/<ver>/keys/verify")
        async def verify(ver: str) -> Response:
            if state.u is None or state.v is None:
                return envelope(400, "Bootstrap key not yet available.")
            k = bytes(a ^ b for a, b in zip(state.u, state.v))
            mac = hmac.new(k, request.args["challenge"].encode(), hashlib.sha384).hexdigest()
            return envelope(200, "Success", {"hmac": mac})

        return app

    async def serve(
        self,
        workdir: Any,
        tls: TlsFiles,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve on a free loopback port, trusting client certificates of ``tls``'s CA."""
        (workdir / "agent-cert.pem").write_text(self.cert_pem)
        (workdir / "agent-key.pem").write_bytes(self.key_pem)
        hc = mtls_config(workdir / "agent-cert.pem", workdir / "agent-key.pem", tls.ca_cert)
        sock = bind(LOOPBACK, 0, FAKE_AGENT_BACKLOG)
        self.port = sock.getsockname()[1]
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(partial(serve_app, self.app(), hc, tls=(sock,)))
                task_status.started(self.port)
        finally:
            sock.close()
