"""Run a real Keylime 7.14.3 verifier and registrar on loopback, for tests and the demo.

``start_keylime(root)`` writes the configs (tools/keylime_config.py), starts the verifier (it
generates the CA that the registrar and tenant then use), waits until it answers GET /version
over mTLS, then does the same for the registrar (plain HTTP and mTLS ports), and yields a
:class:`KeylimeServices`. On exit both are always stopped.

Stopping: each service runs in a process group of its own. Keylime's parent process ignores
SIGTERM and waits for its forked workers (keylime/web/base/server.py, ``start_multi``), so SIGTERM
goes to the whole group; whatever is left after a grace period gets SIGKILL.

Errors::

    KeylimeStartupError    a service exited or did not answer in time; carries its log tail
    (KeylimeCallError and friends from tools.keylime_snippets, for snippets)
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import secrets
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.keylime_config import LOOPBACK, KeylimeLayout, KeylimeSettings, write_configs
from tools.keylime_process import KeylimeStartupError, ServiceProcess, stop_all
from tools.keylime_snippets import (
    KeylimeCallError,
    KeylimeRunError,
    KeylimeSnippetError,
    keylime_checkquote,
    keylime_makecredential,
    run_in_keylime,
)
from tools.keylime_venv import keylime_bin

__all__ = [
    "KeylimeCallError",
    "KeylimeRunError",
    "KeylimeServices",
    "KeylimeSnippetError",
    "KeylimeStartupError",
    "client_ssl_context",
    "free_port",
    "get_json",
    "keylime_checkquote",
    "keylime_makecredential",
    "run_in_keylime",
    "start_keylime",
]

# A cold verifier start runs ~40 alembic migrations and generates an RSA CA, server and client
# key; on the 2-core test machine that takes a few seconds. The limit leaves a wide margin.
STARTUP_TIMEOUT_SECONDS = 90.0
POLL_INTERVAL_SECONDS = 0.2
PROBE_TIMEOUT_SECONDS = 5.0
# Longer than the shutdown_drain_timeout written to the configs (2 s).
STOP_GRACE_SECONDS = 10.0
TENANT_TIMEOUT_SECONDS = 120.0
# A verifier in push mode answers GET /version with 410 Gone
# (keylime/web/verifier/server_info_controller.py show_versions).
VERSION_GONE = 410

# Variables handed on from the caller's environment to Keylime's processes.
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "HOME")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class KeylimeServices:
    """A running real Keylime verifier and registrar, and how to talk to them."""

    layout: KeylimeLayout
    settings: KeylimeSettings
    verifier_ip: str
    verifier_port: int
    registrar_ip: str
    registrar_port: int
    registrar_tls_port: int
    # The environment for Keylime's programs: KEYLIME_DIR and KEYLIME_*_CONFIG for this instance.
    env: Mapping[str, str] = field(repr=False)

    @property
    def config_dir(self) -> Path:
        return self.layout.config_dir

    @property
    def ca_cert(self) -> Path:
        return self.layout.tls_dir / "cacert.crt"

    @property
    def client_cert(self) -> Path:
        return self.layout.tls_dir / "client-cert.crt"

    @property
    def client_key(self) -> Path:
        return self.layout.tls_dir / "client-private.pem"

    @property
    def verifier_url(self) -> str:
        return f"https://{self.verifier_ip}:{self.verifier_port}"

    @property
    def registrar_url(self) -> str:
        return f"http://{self.registrar_ip}:{self.registrar_port}"

    @property
    def registrar_tls_url(self) -> str:
        return f"https://{self.registrar_ip}:{self.registrar_tls_port}"

    @property
    def verifier_log(self) -> Path:
        return self.layout.log_dir / "verifier.log"

    @property
    def registrar_log(self) -> Path:
        return self.layout.log_dir / "registrar.log"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context with Keylime's generated admin certificate (mTLS)."""
        return client_ssl_context(self.layout)

    def run_tenant(
        self,
        *args: str,
        timeout: float = TENANT_TIMEOUT_SECONDS,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``keylime_tenant *args`` against this instance; never raises on its exit code.

        ``env`` adds variables, e.g. ``{"KEYLIME_TENANT_REQUIRE_EK_CERT": "True"}`` to override
        one tenant option for this call (keylime/config.py reads KEYLIME_<COMPONENT>_<OPTION>).
        """
        return subprocess.run(
            [str(keylime_bin("keylime_tenant")), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, **(env or {})},
            cwd=self.layout.root,
            check=False,
        )


def client_ssl_context(layout: KeylimeLayout) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(layout.tls_dir / "cacert.crt"))
    # Keylime's server certificates carry 127.0.0.1 and localhost as SANs, so the hostname check
    # stays on.
    ctx.load_cert_chain(
        str(layout.tls_dir / "client-cert.crt"), str(layout.tls_dir / "client-private.pem")
    )
    return ctx


def keylime_env(layout: KeylimeLayout) -> dict[str, str]:
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    env.update(layout.env())
    return env


def get_json(host: str, port: int, path: str, tls: ssl.SSLContext | None) -> tuple[int, Any]:
    """One GET on loopback; returns the status and the decoded JSON body."""
    conn: http.client.HTTPConnection
    if tls is None:
        conn = http.client.HTTPConnection(host, port, timeout=PROBE_TIMEOUT_SECONDS)
    else:
        conn = http.client.HTTPSConnection(host, port, timeout=PROBE_TIMEOUT_SECONDS, context=tls)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _answers_version(host: str, port: int, tls: Callable[[], ssl.SSLContext] | None) -> bool:
    """True once GET /version answers 200 with a ``current_version``."""
    try:
        status, body = get_json(host, port, "/version", None if tls is None else tls())
    except (OSError, ssl.SSLError, http.client.HTTPException, ValueError):
        return False  # not listening yet, or the CA files are still being written
    if status == VERSION_GONE:
        return True  # a push-mode verifier is up but has no /version
    return status == 200 and "current_version" in body.get("results", {})


def _answers_push(host: str, port: int, tls: Callable[[], ssl.SSLContext]) -> bool:
    """A push-mode verifier answers GET /version with 410 Gone (server_info_controller.py)."""
    try:
        status, _body = get_json(host, port, "/version", tls())
    except (OSError, ssl.SSLError, http.client.HTTPException, ValueError):
        return False
    return status == 410


@contextlib.contextmanager
def start_keylime(
    root: Path,
    *,
    require_ek_cert: bool = False,
    quote_interval_seconds: int = 1,
    enable_agent_mtls: bool = True,
    overrides: Mapping[str, Mapping[str, str]] | None = None,
    startup_timeout: float = STARTUP_TIMEOUT_SECONDS,
    mode: str = "pull",
) -> Iterator[KeylimeServices]:
    """Write configs under ``root``, start verifier then registrar, yield, always stop both.

    ``overrides`` replaces or adds options per config section (see KeylimeSettings).
    ``mode = "push"`` starts the verifier in push mode (API 3.0; its /version answers 410).
    """
    layout = KeylimeLayout(root)
    settings = KeylimeSettings(
        verifier_port=free_port(),
        registrar_port=free_port(),
        registrar_tls_port=free_port(),
        ca_password=secrets.token_urlsafe(16),
        require_ek_cert=require_ek_cert,
        quote_interval_seconds=quote_interval_seconds,
        enable_agent_mtls=enable_agent_mtls,
        overrides=overrides or {},
        mode=mode,
    )
    write_configs(layout, settings)
    env = keylime_env(layout)
    tls = functools.partial(client_ssl_context, layout)
    services = KeylimeServices(
        layout=layout,
        settings=settings,
        verifier_ip=LOOPBACK,
        verifier_port=settings.verifier_port,
        registrar_ip=LOOPBACK,
        registrar_port=settings.registrar_port,
        registrar_tls_port=settings.registrar_tls_port,
        env=env,
    )
    running: list[ServiceProcess] = []
    try:
        # The verifier first: with tls_dir = generate it creates the CA, server and client
        # certificates in KEYLIME_DIR/cv_ca, which the registrar's "default" settings use.
        for name, probes in (
            ("verifier", [(settings.verifier_port, tls, mode == "push")]),
            (
                "registrar",
                [(settings.registrar_port, None, False), (settings.registrar_tls_port, tls, False)],
            ),
        ):
            process = ServiceProcess.spawn(
                f"keylime_{name}",
                [str(keylime_bin(f"keylime_{name}"))],
                env,
                root,
                layout.log_dir / f"{name}.log",
            )
            running.append(process)
            for port, ctx, push in probes:
                probe = _answers_push if push and ctx is not None else _answers_version
                took = process.wait_ready(
                    functools.partial(probe, LOOPBACK, port, ctx),  # type: ignore[arg-type]
                    startup_timeout,
                    POLL_INTERVAL_SECONDS,
                )
                scheme = "http" if ctx is None else "https (mTLS)"
                print(f"keylime: {name} answers on {scheme} port {port} after {took:.1f} s")
        yield services
    finally:
        stop_all(running, STOP_GRACE_SECONDS)
