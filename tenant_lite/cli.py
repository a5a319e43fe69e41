"""Command line of ``limelet-tenant``: parse, load the config, run one command, print, exit.

Exit codes (tenant_lite/errors.py; docs/tenant.md): 0 ok, 1 service error, 2 usage,
3 not found, 4 attestation failed, 5 unreachable, 6 config.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from attest_protocol.cli import base_parser
from tenant_lite import add, commands, mbpolicy, push
from tenant_lite.config import config_path, load_config
from tenant_lite.errors import EXIT_OK, EXIT_USAGE, TenantError

PROG = "limelet-tenant"
EPILOG = (
    "exit codes: 0 ok, 1 service error, 2 usage, 3 not found, 4 attestation failed, "
    "5 unreachable, 6 config"
)


def _common() -> argparse.ArgumentParser:
    # SUPPRESS: given after the subcommand they override, absent they leave the top-level value.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", default=argparse.SUPPRESS, help="TOML config file")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    return common


def _agent_command(
    subs: Any, name: str, help_text: str, func: commands.Command
) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subs.add_parser(
        name, help=help_text, description=help_text, parents=[_common()], epilog=EPILOG
    )
    p.add_argument("agent_id", metavar="AGENT_ID")
    p.set_defaults(func=func)
    return p


def _plain_command(
    subs: Any, name: str, help_text: str, func: commands.Command
) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subs.add_parser(
        name, help=help_text, description=help_text, parents=[_common()], epilog=EPILOG
    )
    p.set_defaults(func=func)
    return p


def _policy_parser(subs: Any) -> None:
    policy = subs.add_parser(
        "policy", help="runtime policies stored by the verifier", parents=[_common()]
    )
    psubs = policy.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    for action, text, func in (
        ("add", "store a runtime policy (JSON) under NAME", commands.policy_add),
        ("update", "replace the runtime policy stored under NAME", commands.policy_update),
    ):
        p = _plain_command(psubs, action, text, func)
        p.add_argument("name", metavar="NAME")
        p.add_argument("file", metavar="FILE", help="runtime policy JSON (or a DSSE envelope)")
        p.add_argument("--runtime-policy-key", metavar="FILE", help="PEM key of a signed policy")
    for action, text, func in (
        ("show", "print a stored runtime policy", commands.policy_show),
        ("delete", "delete a stored runtime policy", commands.policy_delete),
    ):
        _plain_command(psubs, action, text, func).add_argument("name", metavar="NAME")
    _plain_command(psubs, "list", "list stored runtime policy names", commands.policy_list)


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser(
        PROG, "the limelet tenant: the operator's command line for Keylime-compatible services"
    )
    parser.epilog = EPILOG
    parser.add_argument("-c", "--config", default=None, help="TOML config file")
    parser.add_argument("--json", action="store_true", default=False, help="print JSON")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, text in (
        ("add", "check an agent's identity, deliver its payload and hand it to the verifier"),
        ("update", "delete the agent from the verifier, then add it again"),
    ):
        add.add_arguments(_agent_command(subs, name, text, push.dispatch))
    for name, text, func in (
        ("delete", "remove the agent from the verifier", commands.delete),
        ("status", "the agent's state at the registrar and the verifier", commands.status),
        ("reactivate", "resume attestation of a failed or stopped agent", commands.reactivate),
        ("stop", "stop attesting the agent (the verifier keeps its record)", commands.stop),
        ("regstatus", "the agent's registrar record", commands.regstatus),
        ("regdelete", "remove the agent from the registrar", commands.regdelete),
    ):
        p = _agent_command(subs, name, text, func)
        if name == "status":
            p.add_argument("--push-model", action="store_true", help="show it as a push agent")
    for name, text, func in (
        ("cvlist", "agents the verifier knows", commands.cvlist),
        ("bulkinfo", "every verifier record", commands.bulkinfo),
    ):
        p = _plain_command(subs, name, text, func)
        p.add_argument("--verifier-id", default="", help="only agents of this verifier")
    _plain_command(subs, "reglist", "agents the registrar knows", commands.reglist)
    _policy_parser(subs)
    mbpolicy.add_parser(subs, _common(), EPILOG)
    return parser


def _print_result(args: argparse.Namespace, result: Any) -> None:
    if args.json:
        print(json.dumps({"ok": True, "result": result}, indent=2, sort_keys=True))
    else:
        print(json.dumps(result, indent=2, sort_keys=True))


def _print_error(args: argparse.Namespace, exc: TenantError) -> None:
    if args.json:
        print(json.dumps({"ok": False, "error": exc.kind, "message": str(exc)}, indent=2))
    print(f"{PROG}: {exc.kind}: {exc}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and argparse's usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        config = load_config(config_path(args.config, os.environ))
        result = args.func(config, args)
    except TenantError as exc:
        _print_error(args, exc)
        return exc.exit_code
    _print_result(args, result)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
