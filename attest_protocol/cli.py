"""The argument parser every console script starts from (agent, tenant, services).

Nothing here prints or runs anything but argparse's own ``--version``/``--help``; a service's
``main`` (configuration, exit statuses, signals) is service_kit/cli.py.
"""

from __future__ import annotations

import argparse

from attest_protocol import __version__
from attest_protocol.api_version import SUPPORTED_VERSIONS


def base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with ``--version`` printing the limelet release and the API versions served."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    apis = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
    parser.add_argument(
        "--version",
        action="version",
        version=f"{prog} (limelet) {__version__}; Keylime REST API {apis}",
    )
    return parser
