"""The agent's id from the ``uuid`` option.

Modes (rust-keylime ``get_uuid`` in keylime/src/config/base.rs and keylime-agent/src/main.rs;
the last three from the Python agent Keylime shipped before 7.0, keylime_agent.py):

* a literal id: a UUID (normalised to lower-case hyphenated form, as rust-keylime does) or
  any id Keylime's registrar accepts (``[\\w.-]+``, keylime/common/validators.py);
* ``generate``: a random UUID4 on every start;
* ``hash_ek``: hex SHA-256 of the EK public key as a SubjectPublicKeyInfo PEM;
* ``environment``: KEYLIME_AGENT_UUID -- which, set, has already replaced the option itself,
  so reaching this mode means the variable is missing;
* ``hostname``: the host's fully qualified name;
* ``dmidecode``: the SMBIOS system UUID (what ``dmidecode -s system-uuid`` prints).

rust-keylime replaces a malformed literal with a random UUID and a warning; limelet refuses
it instead, so a typo cannot silently register the device under a throw-away id.
"""

from __future__ import annotations

import hashlib
import re
import socket
import uuid
from collections.abc import Callable
from pathlib import Path

from edge_agent.config.errors import OptionValueError

__all__ = ["UUID_MODES", "check_uuid_option", "resolve_agent_id"]

MODE_GENERATE = "generate"
MODE_HASH_EK = "hash_ek"
MODE_ENVIRONMENT = "environment"
MODE_HOSTNAME = "hostname"
MODE_DMIDECODE = "dmidecode"
UUID_MODES = frozenset(
    {MODE_GENERATE, MODE_HASH_EK, MODE_ENVIRONMENT, MODE_HOSTNAME, MODE_DMIDECODE}
)
UUID_ENV_VAR = "KEYLIME_AGENT_UUID"
# The kernel's copy of the SMBIOS system UUID (readable by root only).
DMI_PRODUCT_UUID = Path("/sys/class/dmi/id/product_uuid")
# Keylime's registrar accepts ids matching this (validators.valid_agent_id); limelet keeps
# to ASCII so the id goes into a URL path as it is.
_AGENT_ID_RE = re.compile(r"[\w.-]+", re.ASCII)
# Keylime stores agent_id as String(80) (keylime/models/registrar/registrar_agent.py).
MAX_AGENT_ID_CHARS = 80


def check_uuid_option(value: str, source: str) -> None:
    """Refuse a ``uuid`` that is neither a mode nor an id the registrar would accept."""
    if value in UUID_MODES:
        return
    _checked_id(value, source)


def _checked_id(value: str, source: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        pass
    if not _AGENT_ID_RE.fullmatch(value) or len(value) > MAX_AGENT_ID_CHARS:
        reason = f"not a UUID, a uuid mode ({', '.join(sorted(UUID_MODES))}) or a valid agent id"
        raise OptionValueError("uuid", repr(value), reason, source)
    return value


def resolve_agent_id(
    option: str,
    ek_public_pem: bytes,
    *,
    getfqdn: Callable[[], str] = socket.getfqdn,
    dmi_path: Path = DMI_PRODUCT_UUID,
) -> str:
    """The id this run registers under.  ``ek_public_pem`` is the EK's SPKI PEM."""
    if option == MODE_GENERATE:
        return str(uuid.uuid4())
    if option == MODE_HASH_EK:
        return hashlib.sha256(ek_public_pem).hexdigest()
    if option == MODE_ENVIRONMENT:
        reason = f"needs the {UUID_ENV_VAR} environment variable, which is not set"
        raise OptionValueError("uuid", repr(option), reason, "")
    if option == MODE_HOSTNAME:
        return _checked_id(getfqdn(), "hostname")
    if option == MODE_DMIDECODE:
        return _read_dmi_uuid(dmi_path)
    return _checked_id(option, "")


def _read_dmi_uuid(path: Path) -> str:
    try:
        text = path.read_text(encoding="ascii").strip()
    except OSError as exc:
        reason = f"cannot read {path}: {exc.strerror}"
        raise OptionValueError("uuid", repr(MODE_DMIDECODE), reason, "") from exc
    try:
        return str(uuid.UUID(text))
    except ValueError:
        reason = f"{path} does not hold a UUID"
        raise OptionValueError("uuid", repr(MODE_DMIDECODE), reason, "") from None
