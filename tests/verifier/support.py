"""Helpers for the verifier tests: TLS material, a running verifier, its admin client.

The verifier, the tenant (our httpx client or the real Keylime tenant) and the fake agent
all use certificates from one test CA laid out as Keylime's ``cv_ca``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import httpx

from tests.cv_ca import TlsFiles
from verifier_lite.config import VerifierConfig
from verifier_lite.server import BoundPort

LOOPBACK = "127.0.0.1"
API = "v2.1"
CLIENT_TIMEOUT_SECONDS = 10.0
# Fast polling for tests; production defaults live in verifier_lite.config.
TEST_QUOTE_INTERVAL_SECONDS = 0.2
TEST_RETRY_INTERVAL_SECONDS = 0.1


def verifier_config(data_dir: Path, tls: TlsFiles, **overrides: Any) -> VerifierConfig:
    config = VerifierConfig(
        ip=LOOPBACK,
        port=0,
        data_dir=str(data_dir),
        tls_dir=str(tls.directory),
        quote_interval=TEST_QUOTE_INTERVAL_SECONDS,
        retry_interval=TEST_RETRY_INTERVAL_SECONDS,
        exponential_backoff=False,
        max_retries=3,
        request_timeout=5.0,
        handshake_timeout_seconds=0.5,
    )
    return replace(config, **overrides)


@dataclass(frozen=True)
class RunningVerifier:
    config: VerifierConfig
    bound: BoundPort
    tls: TlsFiles

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.bound.port}"

    def client(self, *, with_cert: bool = True) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url,
            verify=self.tls.client_context(with_cert=with_cert),
            timeout=CLIENT_TIMEOUT_SECONDS,
        )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def add_body(
    *,
    ak_tpm: bytes,
    mtls_cert: Optional[str],
    port: int,
    tpm_policy: str = '{"mask": "0x10000"}',
    v: Optional[bytes] = None,
    **extra: Any,
) -> dict[str, Any]:
    """A ``POST /agents/{id}`` body as Keylime 7.14.3's tenant (do_cvadd) builds it."""
    body: dict[str, Any] = {
        "v": None if v is None else b64(v),
        "cloudagent_ip": LOOPBACK,
        "cloudagent_port": port,
        "verifier_ip": LOOPBACK,
        "verifier_port": 8881,
        "tpm_policy": tpm_policy,
        "runtime_policy": "",
        "runtime_policy_name": "",
        "runtime_policy_key": None,
        "mb_policy": None,
        "mb_policy_name": "",
        "ima_sign_verification_keys": "",
        "metadata": "{}",
        "revocation_key": "",
        "accept_tpm_hash_algs": ["sha512", "sha384", "sha256"],
        "accept_tpm_encryption_algs": ["ecc", "rsa"],
        "accept_tpm_signing_algs": ["ecschnorr", "rsassa"],
        "ak_tpm": b64(ak_tpm),
        "mtls_cert": mtls_cert,
        "supported_version": "2.1",
    }
    body.update(extra)
    return body


def runtime_policy_json(digests: Optional[dict[str, list[str]]] = None) -> str:
    """A minimal valid Keylime runtime policy (keylime/ima/ima.py RUNTIME_POLICY_SCHEMA)."""
    return json.dumps(
        {
            "meta": {"version": 1, "generator": 1},
            "release": 0,
            "digests": digests or {},
            "excludes": [],
            "keyrings": {},
            "ima": {"ignored_keyrings": [], "log_hash_alg": "sha1", "dm_policy": None},
            "ima-buf": {},
            "verification-keys": "",
        }
    )
