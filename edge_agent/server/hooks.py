"""The payload and revocation hooks of the agent API, wired to edge_agent.payload/.revocation.

Payload (rust-keylime keylime-agent/src/payloads.rs): once K is derived, prepare the secure
directory (a tmpfs when root), decrypt the payload with K (AES-256-GCM), write K and the
payload there, unzip it when ``extract_payload_zip`` and run ``payload_script`` from it.
Unlike rust-keylime, the secure directory is mounted when the first payload arrives, not at
start-up: an agent that never gets a payload leaves no mount behind.

Revocation (notifications_handler.rs, revocation.rs): the notification is verified in the
request, so a forged or malformed one gets 400 and runs nothing; before any payload brought a
RevocationNotifier certificate it is logged and ignored (200, as rust-keylime answers); once
verified, the actions run in the background and the verifier gets its answer at once.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import trio

from edge_agent.bootstrap_keys import DerivedKey
from edge_agent.config import AgentConfig
from edge_agent.payload import (
    PayloadError,
    decrypt_payload,
    deploy_payload,
    prepare_secure_dir,
    run_payload_script,
)
from edge_agent.revocation import (
    NoRevocationCertError,
    RevocationError,
    RevocationMessage,
    configured_actions,
    load_revocation_cert,
    run_actions,
    verify_notification,
)
from edge_agent.server.context import Deferred, PayloadDeployer, RevocationHandler
from edge_agent.server.errors import BadRequest

__all__ = ["SECURE_DIR_NAME", "PayloadSettings", "payload_deployer", "revocation_handler"]

log = logging.getLogger(__name__)

# rust-keylime mounts the secure tmpfs at keylime_dir/secure (secure_mount.rs).
SECURE_DIR_NAME = "secure"
_UNZIPPED = "unzipped"


@dataclass(frozen=True)
class PayloadSettings:
    """The agent.conf options the payload path needs."""

    agent_id: str
    secure_dir: Path
    secure_size: str
    dec_payload_file: str
    enc_keyname: str
    extract_zip: bool
    payload_script: str
    script_allowed: bool

    @classmethod
    def from_config(cls, config: AgentConfig, agent_id: str) -> PayloadSettings:
        return cls(
            agent_id=agent_id,
            secure_dir=config.data_dir / SECURE_DIR_NAME,
            secure_size=config.secure_size,
            dec_payload_file=config.dec_payload_file,
            enc_keyname=config.enc_keyname,
            extract_zip=config.extract_payload_zip,
            payload_script=config.payload_script,
            script_allowed=config.enable_agent_mtls or config.enable_insecure_payload,
        )


def payload_deployer(settings: PayloadSettings) -> PayloadDeployer:
    async def deploy(derived: DerivedKey) -> None:
        if derived.payload is None:
            log.info("The bootstrap key came without a payload")
            return
        try:
            await _deploy(settings, derived.key, derived.payload)
        except PayloadError as exc:
            log.error("Payload not deployed: %s", exc)

    return deploy


async def _deploy(settings: PayloadSettings, k: bytes, encrypted: bytes) -> None:
    prepare = functools.partial(
        prepare_secure_dir, settings.secure_dir, settings.secure_size, is_root=os.geteuid() == 0
    )
    secure = await trio.to_thread.run_sync(prepare)
    plain = decrypt_payload(k, encrypted)
    deployed = await deploy_payload(
        secure.path,
        plain,
        k,
        dec_payload_file=settings.dec_payload_file,
        enc_keyname=settings.enc_keyname,
        extract_zip=settings.extract_zip,
    )
    log.info("Payload decrypted into %s", deployed.payload_path)
    if deployed.unzipped is not None:
        status = await run_payload_script(
            deployed.unzipped,
            settings.payload_script,
            allowed=settings.script_allowed,
            agent_uuid=settings.agent_id,
        )
        if status is not None:
            log.info("Payload script %s exited with %d", settings.payload_script, status)


def revocation_handler(config: AgentConfig) -> RevocationHandler:
    secure_dir = config.data_dir / SECURE_DIR_NAME
    actions_dir = Path(config.revocation_actions_dir)

    async def on_revocation(body: bytes) -> Optional[Deferred]:
        load = functools.partial(load_revocation_cert, secure_dir, config.revocation_cert)
        try:
            cert = await trio.to_thread.run_sync(load)
            message = verify_notification(body, cert)
        except NoRevocationCertError:
            log.warning("Revocation notification ignored: no revocation certificate yet")
            return None
        except RevocationError as exc:
            raise BadRequest(f"Revocation notification refused: {exc.reason}") from exc
        log.info("Verified revocation notification for agent %s", message.agent_id)
        return functools.partial(_act, message, config, secure_dir, actions_dir)

    return on_revocation


async def _act(
    message: RevocationMessage, config: AgentConfig, secure_dir: Path, actions_dir: Path
) -> None:
    unzipped = secure_dir / _UNZIPPED
    names = await trio.to_thread.run_sync(configured_actions, config.revocation_actions, unzipped)
    results = await run_actions(
        names, message, actions_dir, unzipped, config.allow_payload_revocation_actions
    )
    for result in results:
        outcome = f"exit status {result.status}" if result.status is not None else result.error
        log.info("Revocation action %s: %s", result.name, outcome)
