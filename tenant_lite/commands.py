"""The tenant's commands other than add/update: each takes the config and parsed arguments
and returns what to print (a JSON-able value), or raises a TenantError.

Behaviour follows keylime/tenant.py 7.14.3 (``do_cvstatus``, ``do_cvdelete``, ``do_regstatus``,
...) with one difference: ``status`` of an agent that is registered but not (yet) added to the
verifier succeeds and says so, instead of failing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Callable

from tenant_lite import push_status, services
from tenant_lite.config import TenantConfig
from tenant_lite.errors import ServiceError, UsageError
from tenant_lite.http import ServiceClient
from tenant_lite.policy import runtime_policy_body
from tenant_lite.signing_keys import runtime_policy_key

Command = Callable[[TenantConfig, argparse.Namespace], Any]
# HTTP 202 from DELETE: Keylime's verifier stops polling first and removes the record later.
ACCEPTED = 202


def reglist(config: TenantConfig, args: argparse.Namespace) -> Any:
    with services.registrar(config) as reg:
        return {"uuids": services.registrar_list(reg)}


def regstatus(config: TenantConfig, args: argparse.Namespace) -> Any:
    with services.registrar(config) as reg:
        record = services.registrar_show(reg, args.agent_id)
    record["operational_state"] = services.OPERATIONAL_STATES[0]
    return {args.agent_id: record}


def regdelete(config: TenantConfig, args: argparse.Namespace) -> Any:
    with services.registrar(config) as reg:
        services.registrar_delete(reg, args.agent_id)
    return {"deleted": args.agent_id, "from": "registrar"}


def cvlist(config: TenantConfig, args: argparse.Namespace) -> Any:
    with services.verifier(config) as ver:
        return {"uuids": services.verifier_list(ver, args.verifier_id)}


def bulkinfo(config: TenantConfig, args: argparse.Namespace) -> Any:
    with services.verifier(config) as ver:
        return services.verifier_bulk(ver, args.verifier_id)


def status(config: TenantConfig, args: argparse.Namespace) -> Any:
    """Registrar first (an unknown agent is NotFound), then the verifier's view if it has one."""
    with services.registrar(config) as reg:
        services.registrar_show(reg, args.agent_id)
    with services.verifier(config) as ver:
        if not services.verifier_has(ver, args.agent_id):
            return {args.agent_id: {"operational_state": services.OPERATIONAL_STATES[0]}}
        record = services.verifier_show(ver, args.agent_id)
    # A push agent (no address at the verifier, or --push-model as Keylime's tenant takes it)
    # has no operational_state worth showing: its attestation_status and counts say it all.
    if getattr(args, "push_model", False) or push_status.is_push_record(record):
        return {args.agent_id: push_status.push_status(record)}
    return {args.agent_id: record}


def delete(config: TenantConfig, args: argparse.Namespace) -> Any:
    with services.verifier(config) as ver:
        if services.verifier_delete(ver, args.agent_id) == ACCEPTED:
            wait_until_gone(config, ver, args.agent_id)
    return {"deleted": args.agent_id, "from": "verifier"}


def delete_if_present(config: TenantConfig, agent_id: str) -> None:
    """``update``'s first half: remove the agent from the verifier unless it is not there."""
    with services.verifier(config) as ver:
        if services.verifier_has(ver, agent_id):
            if services.verifier_delete(ver, agent_id) == ACCEPTED:
                wait_until_gone(config, ver, agent_id)


def wait_until_gone(config: TenantConfig, ver: ServiceClient, agent_id: str) -> None:
    for _ in range(config.max_retries):
        if not services.verifier_has(ver, agent_id):
            return
        time.sleep(config.retry_interval)
    raise ServiceError(
        "verifier",
        ver.address,
        ACCEPTED,
        f"agent {agent_id} is still listed after {config.max_retries} checks; run delete again",
    )


def reactivate(config: TenantConfig, args: argparse.Namespace) -> Any:
    with services.verifier(config) as ver:
        # Keylime's verifier answers 400 (not 404) for an unknown id here; ask first, as
        # keylime/tenant.py do_cvreactivate does.
        services.verifier_show(ver, args.agent_id)
        services.verifier_put(ver, args.agent_id, "reactivate")
    return {"reactivated": args.agent_id}


def stop(config: TenantConfig, args: argparse.Namespace) -> Any:
    with services.verifier(config) as ver:
        services.verifier_show(ver, args.agent_id)
        services.verifier_put(ver, args.agent_id, "stop")
    return {"stopped": args.agent_id}


def read_input(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def _policy_body(args: argparse.Namespace) -> dict[str, str]:
    body = runtime_policy_body(read_input(args.file, "runtime policy"), args.file)
    key_file = getattr(args, "runtime_policy_key", None)
    if key_file:
        body["runtime_policy_key"] = runtime_policy_key(read_input(key_file, "key"), key_file)
    return body


def policy_add(config: TenantConfig, args: argparse.Namespace) -> Any:
    body = _policy_body(args)
    with services.verifier(config) as ver:
        services.policy_add(ver, args.name, body)
    return {"added": args.name}


def policy_update(config: TenantConfig, args: argparse.Namespace) -> Any:
    body = _policy_body(args)
    with services.verifier(config) as ver:
        services.policy_update(ver, args.name, body)
    return {"updated": args.name}


def policy_show(config: TenantConfig, args: argparse.Namespace) -> Any:
    with services.verifier(config) as ver:
        return services.policy_show(ver, args.name)


def policy_list(config: TenantConfig, args: argparse.Namespace) -> Any:
    with services.verifier(config) as ver:
        return {"names": services.policy_list(ver)}


def policy_delete(config: TenantConfig, args: argparse.Namespace) -> Any:
    with services.verifier(config) as ver:
        services.policy_delete(ver, args.name)
    return {"deleted": args.name}
