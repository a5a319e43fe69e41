"""IMA measurement lists: parse ASCII log lines, check template hashes, replay PCR 10.

Pure functions on text and bytes (the agent's reader owns the file and its offsets)::

    parse_ima_log(text) -> list[ImaEntry]      every line, or ImaParseError for the first bad one
    parse_ima_line(line, lineno) -> ImaEntry
    ImaEntry.validate_template_hash()          ImaTemplateHashError on mismatch
    ImaEntry.extend_digest(bank)               what the kernel extended into that bank
    Pcr10Replay(bank).feed(entries) / .feed_until(entries, quoted)
    replay_pcr10(entries, bank) -> bytes

Templates: ``ima``, ``ima-ng``, ``ima-sig``, ``ima-buf`` (those Keylime 7.14 checks).

Errors::

    AttestProtocolError
    ├── ParseError
    │   └── ImaParseError           a line that is not an entry: lineno, column, line
    └── ImaVerificationError        an entry that parsed but does not hold: lineno
        ├── ImaTemplateHashError    logged template hash is not the hash of the template data
        └── ImaPcrIndexError        entry for another PCR met while replaying PCR 10

``FieldError`` (a ``ValueError``) is raised when an :class:`ImaEntry` is constructed directly
from invalid values: that is a caller bug; the parser turns it into ``ImaParseError``.
"""

from __future__ import annotations

from attest_protocol.ima.entry import MAX_IMA_LINE_CHARS, MAX_PCR_INDEX, TEMPLATES, ImaEntry
from attest_protocol.ima.errors import (
    ImaParseError,
    ImaPcrIndexError,
    ImaTemplateHashError,
    ImaVerificationError,
)
from attest_protocol.ima.fields import FieldError
from attest_protocol.ima.log import format_ima_line, parse_ima_line, parse_ima_log
from attest_protocol.ima.replay import Pcr10Replay, replay_pcr10
from attest_protocol.keylime_facts import IMA_PCR

__all__ = [
    "IMA_PCR",
    "MAX_IMA_LINE_CHARS",
    "MAX_PCR_INDEX",
    "TEMPLATES",
    "FieldError",
    "ImaEntry",
    "ImaParseError",
    "ImaPcrIndexError",
    "ImaTemplateHashError",
    "ImaVerificationError",
    "Pcr10Replay",
    "format_ima_line",
    "parse_ima_line",
    "parse_ima_log",
    "replay_pcr10",
]
