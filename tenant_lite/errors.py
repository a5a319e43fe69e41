"""The tenant's exception tree and the exit code each branch maps to.

::

    TenantError                     exit_code 1 unless a subclass says otherwise
    ├── UsageError                  2  options that do not fit together, unreadable input files
    ├── ConfigError                 6  a bad config option, a missing certificate or key file
    ├── NotFoundError               3  the service answered 404 for the agent or policy
    ├── AttestationError            4  the agent may not be trusted: EK certificate, identity
    │                                  quote, PCR 16 binding, key derivation, TLS pin
    ├── UnreachableError            5  no answer from a service (connect, timeout, TLS)
    └── ServiceError                1  a service answered, but with an error or a bad body

Every error names the service and the address it concerns, and says what to check. Messages
never carry K, U, V, the auth tag or payload bytes (CVE-2023-38201 is the registrar-side
example of why).
"""

from __future__ import annotations

# The exit codes are a documented interface (docs/tenant.md); scripts branch on them.
EXIT_OK = 0
EXIT_SERVICE_ERROR = 1
EXIT_USAGE = 2  # argparse uses 2 for its own usage errors as well
EXIT_NOT_FOUND = 3
EXIT_ATTESTATION_FAILED = 4
EXIT_UNREACHABLE = 5
EXIT_CONFIG = 6


class TenantError(Exception):
    """Base of every error the tenant reports to the operator."""

    exit_code: int = EXIT_SERVICE_ERROR
    kind: str = "failed"


class UsageError(TenantError):
    exit_code = EXIT_USAGE
    kind = "usage"


class ConfigError(TenantError):
    """``option`` names the config key or file that is wrong."""

    exit_code = EXIT_CONFIG
    kind = "config"

    def __init__(self, option: str, reason: str) -> None:
        super().__init__(f"config {option}: {reason}")
        self.option = option
        self.reason = reason


class NotFoundError(TenantError):
    exit_code = EXIT_NOT_FOUND
    kind = "not-found"

    def __init__(self, service: str, address: str, what: str) -> None:
        super().__init__(f"{what} does not exist on the {service} at {address}")
        self.service = service
        self.address = address
        self.what = what


class AttestationError(TenantError):
    """``check`` names the failed check (e.g. ``ek-certificate``, ``identity-quote``)."""

    exit_code = EXIT_ATTESTATION_FAILED
    kind = "attestation-failed"

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check


class UnreachableError(TenantError):
    exit_code = EXIT_UNREACHABLE
    kind = "unreachable"

    def __init__(self, service: str, address: str, reason: str) -> None:
        super().__init__(f"the {service} at {address} did not answer: {reason}")
        self.service = service
        self.address = address
        self.reason = reason


class ServiceError(TenantError):
    """The service answered ``status`` (0 when the body, not the status, was the problem)."""

    exit_code = EXIT_SERVICE_ERROR
    kind = "service-error"

    def __init__(self, service: str, address: str, status: int, message: str) -> None:
        super().__init__(f"the {service} at {address} answered {status}: {message}")
        self.service = service
        self.address = address
        self.status = status
