"""Shared, pure pieces of the Keylime REST contract and the TPM 2.0 codecs.

Everything here takes bytes or plain values and returns frozen dataclasses or bytes.
Nothing here imports trio, quart, httpx, or opens a file or a socket: the agent, the
verifier, the registrar and the tenant all import this package, and it imports none of them.
"""

__version__ = "0.1.0"
