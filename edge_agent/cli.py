"""Command line of ``limelet-agent``.

``limelet-agent``                 run the agent until SIGTERM or SIGINT (exit status 0): the
                                  server drains for up to SHUTDOWN_GRACE_SECONDS, then
                                  whatever is left is cancelled
``limelet-agent --check-config``  print the effective configuration and exit 0, or the
                                  error and exit 1 (secrets are shown only as "<set>");
                                  keys the agent ignores are listed as comments
``--strict``                      keys the agent does not use (see edge_agent.config.unknown)
                                  are an error instead of a warning

A configuration, TPM, key or registrar error at start-up is printed as one line and exits 1.

Only the configuration is imported before it is read: the TPM then starts opening in the
background (edge_agent.tpm.early) while trio, the app and the server are imported with
edge_agent.daemon, which runs the agent.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Optional

from attest_protocol.cli import base_parser
from edge_agent.config import AgentConfig, ConfigError, config_files, load_config_report
from edge_agent.config.loader import DEFAULT_PATHS
from edge_agent.config.unknown import IgnoredOption, report
from edge_agent.exits import EXIT_FAILURE, EXIT_OK
from edge_agent.tpm import TpmError
from edge_agent.tpm.early import EarlyTpm

__all__ = ["main"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(
        "limelet-agent", "the limelet edge agent: serves the Keylime agent API from a TPM"
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="print the effective configuration (no secrets) and exit",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail on agent.conf keys the agent does not use instead of warning",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        config, ignored = load_config_report()
        report(ignored, strict=args.strict)
    except ConfigError as exc:
        print(f"limelet-agent: configuration error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.check_config:
        print(render_config(config, ignored))
        return EXIT_OK
    early = _early_tpm(config)
    try:
        from edge_agent.daemon import run  # the long imports, while the TPM opens

        return run(config, early)
    finally:
        if early is not None:
            early.discard()


def _early_tpm(config: AgentConfig) -> Optional[EarlyTpm]:
    try:
        tpm_config = config.tpm_config()
    except TpmError:
        return None  # run_agent meets the same error and reports it in its turn
    return EarlyTpm.start(tpm_config)


def render_config(config: AgentConfig, ignored: Sequence[IgnoredOption] = ()) -> str:
    """The effective configuration as an agent.conf, with the files it came from."""
    lines = [f"# read: {path}" for path in config_files(DEFAULT_PATHS, os.environ)]
    lines.extend(f"# ignored: {item.describe()}" for item in ignored)
    lines.append("[agent]")
    for name, value in config.display().items():
        text = str(value).lower() if isinstance(value, bool) else json.dumps(value)
        lines.append(f"{name} = {text}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
