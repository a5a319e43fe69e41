"""The registrar and verifier calls the tenant makes (Keylime REST API 2.x paths).

Paths and bodies are those Keylime 7.14.3's tenant uses (keylime/tenant.py,
keylime/registrar_client.py): the registrar on its mTLS port only; the verifier's
``/agents/{id}``, ``/agents/{id}/reactivate``, ``/agents/{id}/stop`` and ``/allowlists/{name}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tenant_lite.config import TenantConfig
from tenant_lite.errors import ServiceError
from tenant_lite.http import ServiceClient, raise_for, service_ssl_context

# keylime/common/states.py: the verifier reports operational_state as one of these numbers.
OPERATIONAL_STATES = {
    0: "Registered",
    1: "Start",
    2: "Saved",
    3: "Get Quote",
    4: "Get Quote (retry)",
    5: "Provide V",
    6: "Provide V (retry)",
    7: "Failed",
    8: "Terminated",
    9: "Invalid Quote",
    10: "Tenant Quote Failed",
}
NOT_FOUND = 404
CONFLICT = 409
# States in which the verifier is attesting the agent and has found nothing wrong.
ATTESTING_STATES = frozenset({3, 4})


def state_name(value: object) -> object:
    """The name of a numeric state; anything else is passed through for the operator to see."""
    if isinstance(value, int) and not isinstance(value, bool):
        return OPERATIONAL_STATES.get(value, value)
    return value


def registrar(config: TenantConfig) -> ServiceClient:
    ctx, trust = service_ssl_context(config)
    url = f"https://{config.registrar_ip}:{config.registrar_tls_port}"
    return ServiceClient("registrar", url, ctx, trust, config.request_timeout)


def verifier(config: TenantConfig) -> ServiceClient:
    ctx, trust = service_ssl_context(config)
    url = f"https://{config.verifier_ip}:{config.verifier_port}"
    return ServiceClient("verifier", url, ctx, trust, config.request_timeout)


def agent_what(agent_id: str) -> str:
    return f"agent {agent_id}"


def registrar_show(reg: ServiceClient, agent_id: str) -> dict[str, Any]:
    env = reg.checked("GET", f"/agents/{agent_id}", agent_what(agent_id))
    return dict(env.results)


def registrar_list(reg: ServiceClient) -> list[str]:
    env = reg.checked("GET", "/agents/", "the agent list")
    uuids = env.results.get("uuids", [])
    return [str(u) for u in uuids] if isinstance(uuids, list) else []


def registrar_delete(reg: ServiceClient, agent_id: str) -> None:
    reg.checked("DELETE", f"/agents/{agent_id}", agent_what(agent_id))


def verifier_show(ver: ServiceClient, agent_id: str) -> dict[str, Any]:
    env = ver.checked("GET", f"/agents/{agent_id}", agent_what(agent_id))
    record = dict(env.results)
    record["operational_state"] = state_name(record.get("operational_state"))
    return record


def verifier_has(ver: ServiceClient, agent_id: str) -> bool:
    """True on 200, False on 404; any other answer is a ServiceError."""
    env = ver.call("GET", f"/agents/{agent_id}")
    if env.code == NOT_FOUND:
        return False
    raise_for(env, ver.service, ver.address, agent_what(agent_id))
    return True


def verifier_list(ver: ServiceClient, verifier_id: str = "") -> Any:
    """Keylime answers ``{"uuids": [[id, ...], ...]}``; passed on as the service gives it."""
    env = ver.checked("GET", "/agents/", "the agent list", params={"verifier": verifier_id})
    return env.results.get("uuids", [])


def verifier_bulk(ver: ServiceClient, verifier_id: str = "") -> dict[str, Any]:
    params = {"bulk": "True", "verifier": verifier_id}
    env = ver.checked("GET", "/agents/", "the agent list", params=params)
    out: dict[str, Any] = {}
    for agent_id, record in env.results.items():
        if isinstance(record, Mapping):
            record = dict(record)
            record["operational_state"] = state_name(record.get("operational_state"))
        out[agent_id] = record
    return out


def verifier_add(ver: ServiceClient, agent_id: str, record: Mapping[str, Any]) -> None:
    env = ver.call("POST", f"/agents/{agent_id}", body=record)
    if env.code == CONFLICT:
        raise ServiceError(
            ver.service,
            ver.address,
            env.code,
            f"agent {agent_id} is already added; run delete or update first",
        )
    raise_for(env, ver.service, ver.address, agent_what(agent_id))


def verifier_delete(ver: ServiceClient, agent_id: str) -> int:
    """DELETE; 200 = gone, 202 = the verifier is terminating it (poll until 404)."""
    env = ver.checked("DELETE", f"/agents/{agent_id}", agent_what(agent_id))
    return env.code


def verifier_put(ver: ServiceClient, agent_id: str, action: str) -> None:
    """``action`` is reactivate or stop."""
    ver.checked("PUT", f"/agents/{agent_id}/{action}", agent_what(agent_id), body={})


def policy_what(name: str) -> str:
    return f"runtime policy {name!r}"


def policy_add(ver: ServiceClient, name: str, body: Mapping[str, Any]) -> None:
    ver.checked("POST", f"/allowlists/{name}", policy_what(name), body=body)


def policy_update(ver: ServiceClient, name: str, body: Mapping[str, Any]) -> None:
    """Keylime's ``updateruntimepolicy``: PUT replaces a stored policy (404 when none)."""
    ver.checked("PUT", f"/allowlists/{name}", policy_what(name), body=body)


def policy_show(ver: ServiceClient, name: str) -> dict[str, Any]:
    return dict(ver.checked("GET", f"/allowlists/{name}", policy_what(name)).results)


def policy_list(ver: ServiceClient) -> list[str]:
    env = ver.checked("GET", "/allowlists/", "the runtime policy list")
    names = env.results.get("runtimepolicy names", env.results.get("allowlist names", []))
    return [str(n) for n in names] if isinstance(names, list) else []


def policy_delete(ver: ServiceClient, name: str) -> None:
    ver.checked("DELETE", f"/allowlists/{name}", policy_what(name))
