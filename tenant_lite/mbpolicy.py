"""``limelet-tenant mbpolicy add|show|list|update|delete``: measured-boot reference states
stored by the verifier under a name (Keylime REST API 2.3+ ``/mbpolicies/{name}``).

Keylime's tenant spells these ``-c addmbpolicy``, ``showmbpolicy``, ``listmbpolicy``,
``updatembpolicy`` and ``deletembpolicy`` (keylime/tenant.py ``do_add_mb_policy`` ...); the
body is the same, ``{"mb_policy": "<reference state JSON text>"}``, so a state made by
``keylime-policy create measured-boot`` is stored unchanged.  An agent uses one with
``limelet-tenant add AGENT --mb-policy-name NAME``.
"""

from __future__ import annotations

import argparse
from typing import Any

from tenant_lite import services
from tenant_lite.commands import Command, read_input
from tenant_lite.config import TenantConfig
from tenant_lite.policy import mb_policy_text


def _what(name: str) -> str:
    return f"measured-boot policy {name!r}"


def _store(config: TenantConfig, method: str, name: str, path: str) -> None:
    # The file is read and checked before any connection, so a typo costs no round trip.
    body = {"mb_policy": mb_policy_text(read_input(path, "measured-boot policy"), path)}
    with services.verifier(config) as ver:
        ver.checked(method, f"/mbpolicies/{name}", _what(name), body=body)


def mb_add(config: TenantConfig, args: argparse.Namespace) -> Any:
    _store(config, "POST", args.name, args.file)
    return {"added": args.name}


def mb_update(config: TenantConfig, args: argparse.Namespace) -> Any:
    _store(config, "PUT", args.name, args.file)
    return {"updated": args.name}


def mb_show(config: TenantConfig, args: argparse.Namespace) -> Any:
    with services.verifier(config) as ver:
        return dict(ver.checked("GET", f"/mbpolicies/{args.name}", _what(args.name)).results)


def mb_list(config: TenantConfig, args: argparse.Namespace) -> Any:
    with services.verifier(config) as ver:
        env = ver.checked("GET", "/mbpolicies/", "the measured-boot policy list")
    names = env.results.get("mbpolicy names", [])
    return {"names": [str(n) for n in names] if isinstance(names, list) else []}


def mb_delete(config: TenantConfig, args: argparse.Namespace) -> Any:
    with services.verifier(config) as ver:
        ver.checked("DELETE", f"/mbpolicies/{args.name}", _what(args.name))
    return {"deleted": args.name}


def add_parser(subs: Any, common: argparse.ArgumentParser, epilog: str) -> None:
    """The ``mbpolicy`` command and its actions, on the tenant's subcommand parser."""
    top = subs.add_parser(
        "mbpolicy", help="measured-boot reference states stored by the verifier", parents=[common]
    )
    actions = top.add_subparsers(dest="mbpolicy_command", metavar="ACTION", required=True)

    def action(name: str, text: str, func: Command) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = actions.add_parser(
            name, help=text, description=text, parents=[common], epilog=epilog
        )
        p.set_defaults(func=func)
        return p

    for name, text, func in (
        ("add", "store a reference state (JSON) under NAME", mb_add),
        ("update", "replace the reference state stored under NAME", mb_update),
    ):
        p = action(name, text, func)
        p.add_argument("name", metavar="NAME")
        p.add_argument("file", metavar="FILE", help="reference state JSON (keylime-policy's)")
    for name, text, func in (
        ("show", "print a stored reference state", mb_show),
        ("delete", "delete a stored reference state", mb_delete),
    ):
        action(name, text, func).add_argument("name", metavar="NAME")
    action("list", "list stored measured-boot policy names", mb_list)
