"""Command line of ``limelet-registrar``: ``limelet-registrar [-c CONFIG] [--check-config]``.

The config is TOML (registrar_lite/config.py) with ``LIMELET_REGISTRAR_*`` overrides.  The
service runs until SIGINT or SIGTERM, which cancel the root scope; Hypercorn then drains
open requests for ``shutdown_grace_seconds``.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Optional

import trio

from attest_protocol.cli import add_config_arguments, base_parser, service_main
from registrar_lite.config import RegistrarConfig, load_config
from registrar_lite.errors import RegistrarError
from registrar_lite.server import serve_registrar

log = logging.getLogger("limelet.registrar")


async def _run(config: RegistrarConfig) -> None:
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            ports = await nursery.start(serve_registrar, config)
            print(f"limelet-registrar: http {ports.port}, mTLS {ports.tls_port}", flush=True)
            async for signum in signals:
                log.info("signal %s: shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


def _checked_config(path: Optional[Path]) -> RegistrarConfig:
    config = load_config(path)
    config.sqlite_path()  # a database_url we cannot open is a configuration error
    return config


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(
        "limelet-registrar",
        "the limelet registrar: enrols agent TPM identities (Keylime registrar API)",
    )
    add_config_arguments(parser)
    return service_main(
        parser,
        argv,
        load_config=_checked_config,
        run=lambda config: trio.run(partial(_run, config)),
        errors=(RegistrarError,),
    )


if __name__ == "__main__":
    sys.exit(main())
