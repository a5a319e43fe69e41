"""Argument-parser scaffolding shared by the four console scripts (no I/O beyond argparse)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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


def parse_only(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse the arguments of a component whose service is not in this release yet.

    ``--help`` and ``--version`` work; anything else says plainly that there is no service to
    run yet, with exit status 1, instead of pretending to start one.
    """
    parser.parse_args(argv)
    print(f"{parser.prog}: this release provides only --help and --version", file=sys.stderr)
    return 1
