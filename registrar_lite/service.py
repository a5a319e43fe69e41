"""The registrar's operations, independent of HTTP: register, activate, show, list, delete.

Registration (Keylime 7.14.3 ``AgentsController.create`` and ``RegistrarAgent``):

1. the body is checked field by field (validation.py) and the identity trusted (identity.py);
2. a fresh challenge of ``CHALLENGE_CHARS`` alphanumerics is drawn, like
   ``tpm_util.random_password(32)``; the HMAC key kept for activation is the *base64 text* of
   the challenge (``tpm_main.Tpm.encrypt_aik_with_ek``: ``key = b64encode(challenge)``);
3. the challenge is encrypted to the EK, bound to the AK Name we computed (MakeCredential);
4. the record is stored inactive with regcount + 1, atomically with the identity comparison.

Activation: ``auth_tag`` must equal hex HMAC-SHA384(key, agent_id) (``crypto.do_hmac``),
compared in constant time.  A wrong tag deletes the pending record, as Keylime does; unlike
Keylime, an already *active* record is left alone (otherwise anyone on the plain port could
delete any agent) and the error never echoes a tag.
"""

from __future__ import annotations

import base64
import hmac
import logging
import os
import secrets
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional

from cryptography import x509

from attest_protocol.bootstrap_keys import hmac_sha384_hex
from attest_protocol.credential import make_credential
from registrar_lite.errors import ActivationError, AgentNotFoundError, IdentityChangedError
from registrar_lite.identity import ak_name, check_identity
from registrar_lite.store import AgentRecord, AgentStore, changed_identity
from registrar_lite.validation import (
    Registration,
    check_agent_id,
    parse_auth_tag,
    parse_registration,
)

# Keylime draws random_password(32): 32 of [A-Za-z0-9], about 190 bits; it must fit the EK
# nameAlg's digest (32 bytes for SHA-256), the limit TPM2_MakeCredential sets.
CHALLENGE_CHARS = 32
_ALPHABET = string.ascii_letters + string.digits

log = logging.getLogger(__name__)


def new_challenge() -> bytes:
    return "".join(secrets.choice(_ALPHABET) for _ in range(CHALLENGE_CHARS)).encode("ascii")


def expected_auth_tag(challenge_key: str, agent_id: str) -> str:
    """hex HMAC-SHA384 keyed with the base64 text of the challenge, over the agent id."""
    return hmac_sha384_hex(challenge_key.encode("ascii"), agent_id)


def _b64(data: Optional[bytes]) -> Optional[str]:
    return None if data is None else base64.b64encode(data).decode("ascii")


def render(record: AgentRecord) -> dict[str, Any]:
    """The GET body: Keylime's field names and encodings (registrar_agent.py ``render``)."""
    return {
        "agent_id": record.agent_id,
        "ek_tpm": _b64(record.ek_tpm),
        "ekcert": _b64(record.ekcert),
        "aik_tpm": _b64(record.aik_tpm),
        "mtls_cert": record.mtls_cert,
        "ip": record.ip,
        "port": record.port,
        "regcount": record.regcount,
        "iak_tpm": _b64(record.iak_tpm),
        "iak_cert": _b64(record.iak_cert),
        "idevid_tpm": _b64(record.idevid_tpm),
        "idevid_cert": _b64(record.idevid_cert),
    }


def _record(reg: Registration, challenge_key: str) -> AgentRecord:
    return AgentRecord(
        agent_id=reg.agent_id,
        ek_tpm=reg.ek_tpm,
        ekcert=reg.ekcert,
        aik_tpm=reg.aik_tpm,
        iak_tpm=reg.iak_tpm,
        iak_cert=reg.iak_cert,
        idevid_tpm=reg.idevid_tpm,
        idevid_cert=reg.idevid_cert,
        iak_attest=reg.iak_attest,
        iak_sign=reg.iak_sign,
        mtls_cert=reg.mtls_cert,
        ip=reg.ip,
        port=reg.port,
        challenge_key=challenge_key,
        active=False,
        regcount=0,
    )


class Registrar:
    def __init__(
        self,
        store: AgentStore,
        trust_store: Optional[Sequence[x509.Certificate]] = None,
        *,
        challenge: Callable[[], bytes] = new_challenge,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._store = store
        self._trust_store = trust_store
        self._challenge = challenge
        self._random_bytes = random_bytes

    async def register(self, agent_id: str, body: Mapping[str, Any]) -> str:
        """Validate, store pending, and return the base64 credential blob."""
        reg = parse_registration(agent_id, body)
        # Keylime checks immutability before anything else, so a changed identity is 403
        # even when the new material is also invalid.  The store repeats the check atomically.
        old = await self._store.get(reg.agent_id)
        if old is not None:
            changed = changed_identity(old, _record(reg, ""))
            if changed:
                # The 403's text is Keylime's and names no field; the operator reads it here.
                log.warning(
                    "Refused re-registration of agent %s: %s differ from the registered ones",
                    reg.agent_id,
                    ", ".join(changed),
                )
                raise IdentityChangedError(changed)
        ek = check_identity(reg, self._trust_store)
        challenge = self._challenge()
        blob = make_credential(ek, ak_name(reg), challenge, random_bytes=self._random_bytes)
        key = base64.b64encode(challenge).decode("ascii")
        await self._store.register(_record(reg, key))
        return base64.b64encode(blob).decode("ascii")

    async def activate(self, agent_id: str, body: Mapping[str, Any]) -> None:
        check_agent_id(agent_id)
        auth_tag = parse_auth_tag(body)
        # A held re-registration of an active agent (store_held.py) is what is being activated.
        record = await self._store.get_held(agent_id) or await self._store.get(agent_id)
        if record is None:
            raise AgentNotFoundError(agent_id)
        expected = expected_auth_tag(record.challenge_key, agent_id)
        if hmac.compare_digest(auth_tag.encode("ascii"), expected.encode("ascii")):
            if await self._store.activate(agent_id, record.challenge_key):
                return
        elif record.active:
            raise ActivationError(agent_id, deleted=False)
        # Wrong tag on a pending record, or a re-registration replaced the challenge meanwhile.
        deleted = await self._store.delete_pending(agent_id, record.challenge_key)
        raise ActivationError(agent_id, deleted=deleted)

    async def show(self, agent_id: str) -> dict[str, Any]:
        check_agent_id(agent_id)
        record = await self._store.get(agent_id)
        if record is None:
            raise AgentNotFoundError(agent_id)
        if not record.active:
            raise AgentNotFoundError(agent_id, inactive=True)
        return render(record)

    async def list_ids(self) -> list[str]:
        return await self._store.list_ids()

    async def delete(self, agent_id: str) -> None:
        check_agent_id(agent_id)
        if not await self._store.delete(agent_id):
            raise AgentNotFoundError(agent_id)
