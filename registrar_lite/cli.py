"""Command line of ``limelet-registrar``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from attest_protocol.cli import base_parser, parse_only


def main(argv: Sequence[str] | None = None) -> int:
    return parse_only(
        base_parser(
            "limelet-registrar",
            "the limelet registrar: enrols agent TPM identities (Keylime registrar API)",
        ),
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
