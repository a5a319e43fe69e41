"""Which enrolments are push agents, and refusing a push agent that could never attest.

Keylime's ``mode`` is global: a push verifier stores ``ip = port = NULL`` for every agent
(keylime/cloud_verifier_tornado.py AgentsHandler.post) and keylime/agent_util.py
``is_push_mode_agent`` reads that back.  Here the mode is per agent, chosen at enrolment: an
agent is a push agent when the tenant sends no contact address (``cloudagent_ip`` and
``cloudagent_port`` null or absent), or marks it explicitly with ``"push_model": true`` (or
``"accept_attestations": true``); with ``mode = mixed`` also when it sends neither a V nor an
agent mTLS certificate, which is what Keylime 7.14.3's ``keylime_tenant --push-model`` sends
(tenant.py ``do_cvadd``); with ``mode = push`` every enrolment is a push agent.  A push
agent is stored with ``ip = ""`` and ``port = 0`` and shown with ``ip``/``port`` null, as
Keylime shows it; the polling engine never starts a task for it.

Keylime accepts a push agent with no tpm_policy, runtime or measured-boot policy, asks it
for no evidence and leaves it PENDING forever; here that enrolment is a 400 saying why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from verifier_lite.agent_client import MTLS_DISABLED
from verifier_lite.errors import RequestError
from verifier_lite.records import AgentRecord
from verifier_lite.tpm_policy import parse_tpm_policy
from verifier_lite.validation import AddAgentRequest

NO_IP = ""
NO_PORT = 0
_PLACEHOLDER_IP = "127.0.0.1"  # only to pass the pull-mode field checks; never stored
_PLACEHOLDER_PORT = 1
NO_POLICY_MESSAGE = (
    "a push-mode agent needs a tpm_policy with PCR values, a runtime policy or a measured-boot "
    "policy: with none the verifier would request no evidence and the agent would never attest"
)


def is_push_agent(agent: AgentRecord) -> bool:
    return agent.ip == NO_IP and agent.port == NO_PORT


def is_push_enrolment(body: Mapping[str, Any], mode: str = "pull") -> bool:
    """``mode`` is the verifier's (config.py PUSH_MODES)."""
    if mode == "push" or body.get("push_model") is True or body.get("accept_attestations"):
        return True
    if body.get("cloudagent_ip") in (None, "") and body.get("cloudagent_port") in (None, ""):
        return True
    # keylime_tenant --push-model still sends the registrar's ip/port, but never a V, and a
    # push agent has no mTLS server: mode = mixed reads that pair as a push enrolment.
    no_cert = body.get("mtls_cert") in (None, "", MTLS_DISABLED)
    return mode == "mixed" and body.get("v") in (None, "") and no_cert


def contactless(body: Mapping[str, Any]) -> dict[str, Any]:
    """The body with a placeholder address, so the shared field checks apply to the rest."""
    return {**body, "cloudagent_ip": _PLACEHOLDER_IP, "cloudagent_port": _PLACEHOLDER_PORT}


def as_push(req: AddAgentRequest) -> AddAgentRequest:
    """The request as a push agent is stored; RequestError (400) when it has no policy."""
    has_policy = bool(
        parse_tpm_policy(req.tpm_policy)
        or req.runtime_policy
        or req.runtime_policy_name
        or req.mb_policy is not None
        or req.mb_policy_name
    )
    if not has_policy:
        raise RequestError("tpm_policy", NO_POLICY_MESSAGE)
    return dataclasses.replace(req, ip=NO_IP, port=NO_PORT)
