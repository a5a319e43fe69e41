"""``add`` and ``update``: trust an agent, deliver its payload, hand it to the verifier.

The order (keylime/tenant.py ``init_add``, ``do_quote``, ``do_cvadd``, ``do_verify``), with
every local check first and the EK check before any contact with agent or verifier:

1. options, files, policies and the encrypted payload are prepared (no network);
2. the registrar record is fetched over mTLS;
3. the EK certificate is checked (trust store and/or ek_check_script);
4. the agent is asked for an identity quote over mTLS, its ``mtls_cert`` pinned; the quote
   must verify with the registered AK, and PCR 16 must bind the NK public key it sent;
5. U (encrypted to the NK) goes to the agent with ``auth_tag`` and the payload;
6. V and the agent record go to the verifier, and add waits until the verifier lists it;
7. with ``--verify``, the agent proves it derived K (``keys/verify``); on failure the verifier
   is told to stop attesting it, as Keylime does.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hmac
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from attest_protocol.bootstrap_keys import (
    SplitKey,
    encrypt_payload,
    encrypt_to_nk,
    hmac_sha384_hex,
    split_key,
)
from tenant_lite import agent, commands, services, signing_keys
from tenant_lite.certpkg import build_package
from tenant_lite.config import TenantConfig
from tenant_lite.errors import AttestationError, ServiceError, UsageError
from tenant_lite.http import ServiceClient
from tenant_lite.policy import AgentPolicies, build_policies
from tenant_lite.trust import check_identity_quote, ek_checks


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ip", help="agent address (default: the one it registered)")
    p.add_argument("--port", type=int, help="agent port (default: the one it registered)")
    p.add_argument("--tpm-policy", help='JSON PCR policy, e.g. \'{"15": ["0000..."]}\'')
    p.add_argument("--runtime-policy", metavar="FILE", help="runtime (IMA) policy JSON")
    p.add_argument("--runtime-policy-name", metavar="NAME", help="a policy stored by the verifier")
    p.add_argument(
        "--mb-policy", "--mb-refstate", metavar="FILE", help="measured-boot reference state JSON"
    )
    p.add_argument("--runtime-policy-key", metavar="FILE", help="PEM key of a signed policy")
    p.add_argument(
        "--sign-verification-key", metavar="FILE", action="append", default=[],
        help="public key checking IMA signatures (repeatable)",
    )  # fmt: skip
    p.add_argument("--mb-policy-name", metavar="NAME", help="a stored measured-boot policy")
    payload = p.add_mutually_exclusive_group()
    payload.add_argument("-f", "--file", metavar="FILE", help="payload to deliver encrypted")
    payload.add_argument("--cert", metavar="DIR", help="CA directory: deliver a cert package")
    p.add_argument("--include", metavar="DIR", help="with --cert: add these files to it")
    p.add_argument("--verify", action="store_true", help="confirm the agent derived the key")
    p.add_argument("--ek-ca-dir", metavar="DIR", help="EK CA certificates (tpm_cert_store)")
    p.add_argument("--ek-check-script", metavar="PATH", help="script that judges the EK")
    p.add_argument(
        "--push-model",
        action="store_true",
        help="the agent pushes its evidence (API 3.0): never contact it (tenant_lite/push.py)",
    )


@dataclass(frozen=True)
class Prepared:
    policies: AgentPolicies
    key: Optional[SplitKey] = field(repr=False)
    payload: Optional[bytes] = field(repr=False)
    metadata: dict[str, Any]
    revocation_key: str = field(repr=False)


def _optional_file(path: Optional[str], what: str) -> Optional[bytes]:
    return None if path is None else commands.read_input(path, what)


def _with_keys(policies: AgentPolicies, args: argparse.Namespace) -> AgentPolicies:
    key_file = getattr(args, "runtime_policy_key", None)
    key = signing_keys.runtime_policy_key(
        _optional_file(key_file, "runtime policy key"), key_file or ""
    )
    files = getattr(args, "sign_verification_key", None) or []
    keyring = signing_keys.verification_keyring(
        [(commands.read_input(f, "signature verification key"), f) for f in files]
    )
    return dataclasses.replace(policies, runtime_policy_key=key, ima_sign_verification_keys=keyring)


def prepare(config: TenantConfig, args: argparse.Namespace) -> Prepared:
    """Everything that needs no network; UsageError for options that do not fit together."""
    if args.include and not args.cert:
        raise UsageError("--include works only with --cert")
    if args.verify and not (args.file or args.cert):
        raise UsageError("--verify needs a payload (-f or --cert) whose key it can check")
    policies = build_policies(
        tpm_policy=args.tpm_policy,
        runtime_policy=_optional_file(args.runtime_policy, "runtime policy"),
        runtime_policy_source=args.runtime_policy or "",
        runtime_policy_name=args.runtime_policy_name,
        mb_policy=_optional_file(args.mb_policy, "measured-boot policy"),
        mb_policy_source=args.mb_policy or "",
        mb_policy_name=args.mb_policy_name,
    )
    policies = _with_keys(policies, args)
    plaintext, metadata, revocation_key = None, {}, ""
    if args.file:
        plaintext = commands.read_input(args.file, "payload")
    elif args.cert:
        include = Path(args.include) if args.include else None
        package = build_package(Path(args.cert), args.agent_id, include)
        plaintext, metadata = package.zip_bytes, package.metadata
        revocation_key = package.revocation_key_pem
    if plaintext is None:
        return Prepared(policies, None, None, metadata, revocation_key)
    key = split_key()
    payload = encrypt_payload(key.k, plaintext)
    if len(payload) > config.max_payload_size:
        raise UsageError(
            f"the encrypted payload is {len(payload)} bytes, over max_payload_size "
            f"({config.max_payload_size})"
        )
    return Prepared(policies, key, payload, metadata, revocation_key)


def effective_config(config: TenantConfig, args: argparse.Namespace) -> TenantConfig:
    changes: dict[str, Any] = {}
    if args.ek_ca_dir:
        changes.update(tpm_cert_store=args.ek_ca_dir, require_ek_cert=True)
    if args.ek_check_script:
        changes["ek_check_script"] = args.ek_check_script
    return dataclasses.replace(config, **changes)


def verifier_record(
    config: TenantConfig,
    prepared: Prepared,
    reg: dict[str, Any],
    where: tuple[str, int],
    api: str,
) -> dict[str, Any]:
    """The POST /agents/{id} body, field for field as keylime/tenant.py ``do_cvadd`` sends it."""
    p = prepared.policies
    v = None if prepared.key is None else base64.b64encode(prepared.key.v).decode("ascii")
    return {
        "v": v,
        "cloudagent_ip": where[0],
        "cloudagent_port": where[1],
        "verifier_ip": config.verifier_ip,
        "verifier_port": config.verifier_port,
        "tpm_policy": json.dumps(p.tpm_policy),
        "runtime_policy": p.runtime_policy,
        "runtime_policy_name": p.runtime_policy_name,
        "runtime_policy_key": p.runtime_policy_key,
        "mb_policy": p.mb_policy,
        "mb_policy_name": p.mb_policy_name,
        "ima_sign_verification_keys": p.ima_sign_verification_keys,
        "metadata": json.dumps(prepared.metadata),
        "revocation_key": prepared.revocation_key,
        "accept_tpm_hash_algs": sorted(config.algs("hash")),
        "accept_tpm_encryption_algs": sorted(config.algs("encryption")),
        "accept_tpm_signing_algs": sorted(config.algs("signing")),
        "ak_tpm": reg["aik_tpm"],
        "mtls_cert": reg.get("mtls_cert"),
        "supported_version": api,
    }


def _agent_address(args: argparse.Namespace, reg: dict[str, Any]) -> tuple[str, int]:
    ip = args.ip or reg.get("ip")
    port = args.port or reg.get("port")
    if not ip or not port:
        raise UsageError(f"agent {args.agent_id} registered no address; give --ip and --port")
    return str(ip), int(port)


def _deliver_u(
    config: TenantConfig,
    client: ServiceClient,
    args: argparse.Namespace,
    reg: dict[str, Any],
    prepared: Prepared,
) -> None:
    """Steps 4 and 5: the identity quote, then U, auth_tag and payload to the agent."""
    nonce = agent.random_text()
    results = agent.identity_quote(client, args.agent_id, nonce)
    accepted = {k: config.algs(k) for k in ("hash", "encryption", "signing")}
    pubkey = check_identity_quote(args.agent_id, results, reg["aik_tpm"], nonce, accepted)
    if prepared.key is None:
        return
    body: dict[str, Any] = {
        "encrypted_key": base64.b64encode(encrypt_to_nk(pubkey, prepared.key.u)).decode(),
        "auth_tag": hmac_sha384_hex(prepared.key.k, args.agent_id),
    }
    if prepared.payload is not None:
        body["payload"] = prepared.payload.decode("ascii")
    agent.send_ukey(client, args.agent_id, body)


def wait_listed(config: TenantConfig, ver: ServiceClient, agent_id: str) -> None:
    for _ in range(config.max_retries):
        if services.verifier_has(ver, agent_id):
            return
        time.sleep(config.retry_interval)
    raise ServiceError(
        ver.service, ver.address, 0, f"agent {agent_id} was accepted but is not listed"
    )


def _verify_key(
    config: TenantConfig,
    client: ServiceClient,
    ver: ServiceClient,
    agent_id: str,
    key: SplitKey,
) -> None:
    """Step 7: retry while the agent waits for V from the verifier, then give up and stop."""
    challenge = agent.random_text()
    expected = hmac_sha384_hex(key.k, challenge)
    for _ in range(config.max_retries):
        mac = agent.derived_key_hmac(client, challenge)
        if mac is not None and hmac.compare_digest(mac, expected):
            return
        time.sleep(config.retry_interval)
    services.verifier_put(ver, agent_id, "stop")
    raise AttestationError(
        "key-derivation",
        f"agent {agent_id} did not prove it derived the key after {config.max_retries} tries; "
        "the verifier was told to stop attesting it",
    )


def run(config: TenantConfig, args: argparse.Namespace) -> Any:
    prepared = prepare(config, args)
    config = effective_config(config, args)
    with services.registrar(config) as reg_client:
        reg = services.registrar_show(reg_client, args.agent_id)
    store = Path(config.tpm_cert_store) if config.tpm_cert_store else None
    warnings = ek_checks(
        args.agent_id,
        reg,
        require_ek_cert=config.require_ek_cert,
        store_dir=store,
        script=config.ek_check_script,
    )
    where = _agent_address(args, reg)
    if args.command == "update":
        # After the EK check, so an update that cannot succeed leaves the old record alone.
        commands.delete_if_present(config, args.agent_id)
    client = agent.agent_client(config, args.agent_id, *where, reg.get("mtls_cert"))
    with client, services.verifier(config) as ver:
        _deliver_u(config, client, args, reg, prepared)
        record = verifier_record(config, prepared, reg, where, str(client.version()))
        services.verifier_add(ver, args.agent_id, record)
        wait_listed(config, ver, args.agent_id)
        if args.verify and prepared.key is not None:
            _verify_key(config, client, ver, args.agent_id, prepared.key)
    return {
        "agent_id": args.agent_id,
        "agent": f"{where[0]}:{where[1]}",
        "verifier": config.verifier_address,
        "payload_delivered": prepared.payload is not None,
        "key_verified": bool(args.verify),
        "warnings": warnings,
    }
