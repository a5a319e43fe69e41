"""``add --push-model`` and the status of push agents: nothing here contacts the agent.

A push agent (API 3.0, behind NAT) opens its own sessions with the verifier, so the tenant
only hands the verifier its record.  What keylime/tenant.py 7.14.3 does with ``--push-model``
(``main`` skips ``preloop``, ``do_quote`` and ``do_verify``; ``do_cvadd`` sends the body):

* no bootstrap key: ``v`` is null, so no payload, no ``--cert`` and no ``--verify``; we refuse
  those options instead of silently ignoring them;
* ``ak_tpm`` is copied from the registrar: it is the trust anchor of every proof of
  possession and quote the verifier checks later;
* ``cloudagent_ip``/``cloudagent_port`` are whatever the registrar holds (or ``--ip``/``--port``);
  a push verifier stores null for both, which is what marks a push agent
  (keylime/agent_util.py ``is_push_mode_agent``);
* ``supported_version`` is "1.0" when the agent registered no mTLS certificate, otherwise the
  tenant's current version (the agent is never asked).

Beyond Keylime's tenant, the EK certificate checks (tenant_lite/trust.py ``ek_checks``) still
run, since they need only the registrar's record, and an enrolment with no policy at all is
reported as a warning: the verifier would request no evidence and the agent never attests.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional

from attest_protocol.api_version import CURRENT_VERSION
from tenant_lite import add, commands, services
from tenant_lite.config import TenantConfig
from tenant_lite.errors import UsageError
from tenant_lite.trust import ek_checks

# keylime/tenant.py init_add: an agent without an mTLS certificate is taken to speak 1.0.
NO_MTLS_AGENT_VERSION = "1.0"
NO_POLICY_WARNING = (
    "no tpm_policy, runtime policy or measured-boot policy: a push verifier requests no "
    "evidence, so this agent will never attest"
)


def check_options(args: argparse.Namespace) -> None:
    """Options that need the agent's REST server make no sense for a push agent."""
    for option, given in (
        ("-f/--file", args.file),
        ("--cert", args.cert),
        ("--include", args.include),
        ("--verify", args.verify),
    ):
        if given:
            raise UsageError(
                f"{option} cannot be used with --push-model: a push agent is never contacted, "
                "so no payload or key can be delivered to it"
            )


def _address(args: argparse.Namespace, reg: dict[str, Any]) -> tuple[Optional[str], Optional[int]]:
    ip = args.ip or reg.get("ip")
    port = args.port or reg.get("port")
    return (str(ip) if ip else None, int(port) if port else None)


def push_record(
    config: TenantConfig, prepared: add.Prepared, reg: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """``do_cvadd``'s body in push mode: the pull body with no V and no agent contact."""
    mtls = reg.get("mtls_cert")
    api = NO_MTLS_AGENT_VERSION if mtls is None else str(CURRENT_VERSION)
    ip, port = _address(args, reg)
    record = add.verifier_record(config, prepared, reg, ("", 0), api)
    record.update(cloudagent_ip=ip, cloudagent_port=port, v=None)
    return record


def _has_policy(prepared: add.Prepared) -> bool:
    p = prepared.policies
    return bool(
        (p.tpm_policy and any(k != "mask" for k in p.tpm_policy))
        or p.runtime_policy
        or p.runtime_policy_name
        or p.mb_policy
        or p.mb_policy_name
    )


def run_add(config: TenantConfig, args: argparse.Namespace) -> Any:
    check_options(args)
    prepared = add.prepare(config, args)
    config = add.effective_config(config, args)
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
    if not _has_policy(prepared):
        warnings = [*warnings, NO_POLICY_WARNING]
    if args.command == "update":
        commands.delete_if_present(config, args.agent_id)
    with services.verifier(config) as ver:
        services.verifier_add(ver, args.agent_id, push_record(config, prepared, reg, args))
        add.wait_listed(config, ver, args.agent_id)
    return {
        "agent_id": args.agent_id,
        "push_model": True,
        "verifier": config.verifier_address,
        "payload_delivered": False,
        "key_verified": False,
        "warnings": warnings,
    }


def dispatch(config: TenantConfig, args: argparse.Namespace) -> Any:
    """``add``/``update``: the push enrolment with ``--push-model``, else the pull one."""
    if getattr(args, "push_model", False):
        return run_add(config, args)
    return add.run(config, args)
