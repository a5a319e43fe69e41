"""Command line of ``limelet-tenant``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from attest_protocol.cli import base_parser, parse_only


def main(argv: Sequence[str] | None = None) -> int:
    return parse_only(
        base_parser(
            "limelet-tenant",
            "the limelet tenant: the operator's command line for Keylime-compatible services",
        ),
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
