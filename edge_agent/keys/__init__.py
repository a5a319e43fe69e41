"""The agent's own keys, kept in its data dir.

``nk``     the NK, the RSA-2048 payload key the U/V halves are encrypted to
``mtls``   the mTLS server key (ECC P-256) and its self-signed certificate
``pem``    PEM private keys, optionally password-encrypted
``files``  bounded reads and atomic 0600 writes
``errors`` the exception tree (AgentKeyError and below)

All of it blocks (key generation, file I/O): the daemon calls it in ``trio.to_thread``.
"""

from __future__ import annotations

from edge_agent.keys.errors import AgentKeyError, KeyFileError, KeyMaterialError
from edge_agent.keys.mtls import ServerIdentity, load_or_create_server_identity
from edge_agent.keys.nk import load_or_create_nk, nk_public_pem

__all__ = [
    "AgentKeyError",
    "KeyFileError",
    "KeyMaterialError",
    "ServerIdentity",
    "load_or_create_nk",
    "load_or_create_server_identity",
    "nk_public_pem",
]
