"""The verifier fixtures of tests/verifier, for the swap tests that attest the rust agent."""

from __future__ import annotations

from tests.verifier.conftest import tls_files, verifier

__all__ = ["tls_files", "verifier"]
