"""Command line of ``limelet-agent``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from attest_protocol.cli import base_parser, parse_only


def main(argv: Sequence[str] | None = None) -> int:
    return parse_only(
        base_parser(
            "limelet-agent", "the limelet edge agent: serves the Keylime agent API from a TPM"
        ),
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
