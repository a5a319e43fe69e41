"""Parse (and print) IMA ASCII log lines: text in, frozen :class:`ImaEntry` out.

Pure: no file access, no offsets kept.  The agent's reader owns the file and feeds lines here
with their line numbers; any line that is not a valid entry raises :class:`ImaParseError`
naming the line number, the column of the failing field and the line itself.  Unlike
rust-keylime's reader (keylime/src/ima/ima_log.rs), nothing is skipped.
"""

from __future__ import annotations

import re
from typing import Any

from attest_protocol.ima import fields
from attest_protocol.ima.entry import MAX_IMA_LINE_CHARS, MAX_PCR_INDEX, TEMPLATES, ImaEntry
from attest_protocol.ima.errors import ImaParseError
from attest_protocol.ima.fields import FieldError
from attest_protocol.tpm2.constants import TpmAlg

# Template data fields per template, as split on spaces (the last one takes the rest).
_PCR = re.compile(r"[0-9]{1,2}", re.ASCII)
_DATA_FIELDS = {"ima": 2, "ima-ng": 2, "ima-sig": 3, "ima-buf": 3}


def parse_ima_line(line: str, lineno: int, *, log_alg: TpmAlg = TpmAlg.SHA1) -> ImaEntry:
    """One log line (without its newline) as an :class:`ImaEntry`."""
    if len(line) > MAX_IMA_LINE_CHARS:
        raise ImaParseError(lineno, line, f"longer than {MAX_IMA_LINE_CHARS} characters")
    head = line.split(" ", 3)
    if len(head) != 4:
        raise ImaParseError(lineno, line, f"expected 4 fields, found {len(head)}", len(line))
    pcr_text, hash_text, name, data = head
    column = 0
    try:
        if not _PCR.fullmatch(pcr_text):
            raise FieldError(f"PCR index {pcr_text!r} is not a decimal number")
        if int(pcr_text) > MAX_PCR_INDEX:
            raise FieldError(f"PCR {pcr_text} out of range 0..{MAX_PCR_INDEX}")
        column = len(pcr_text) + 1
        template_hash = fields.parse_hex(hash_text, "template hash")
        column += len(hash_text) + 1
        if name not in TEMPLATES:
            raise FieldError(f"unknown template {name!r}")
        column += len(name) + 1
        kwargs = _parse_data(name, data)
        return ImaEntry(
            lineno=lineno,
            pcr=int(pcr_text),
            template_hash=template_hash,
            template_name=name,
            log_alg=log_alg,
            **kwargs,
        )
    except FieldError as exc:
        raise ImaParseError(lineno, line, str(exc), column) from None


def _parse_data(template: str, data: str) -> dict[str, Any]:
    count = _DATA_FIELDS[template]
    parts = data.split(" ", count - 1)
    if len(parts) != count:
        raise FieldError(f"{template} template data needs {count} fields, found {len(parts)}")
    if template == "ima":
        digest = fields.parse_hex(parts[0], "file digest")
        alg = fields.LEGACY_DIGEST_ALGS.get(len(digest))
        if alg is None:
            raise FieldError(
                f"'ima' template digest of {len(digest)} bytes is neither SHA-1 nor MD5"
            )
    else:
        alg, digest = fields.parse_ng_digest(parts[0])
    kwargs: dict[str, Any] = {"digest_alg": alg, "digest": digest, "path": parts[1]}
    if template == "ima-sig":
        kwargs["signature"] = fields.parse_hex(parts[2], "signature")
    elif template == "ima-buf":
        kwargs["buffer"] = fields.parse_hex(parts[2], "buffer")
    return kwargs


def parse_ima_log(
    text: str, *, log_alg: TpmAlg = TpmAlg.SHA1, first_lineno: int = 1
) -> list[ImaEntry]:
    """Every line of ``text`` as an entry; ``first_lineno`` numbers the first line.

    A final newline is optional (an incremental reader may hand over a tail that ends on a
    line boundary either way).  An empty line anywhere else is an error, not skipped.
    """
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    entries = []
    for lineno, line in enumerate(lines, start=first_lineno):
        if not line:
            raise ImaParseError(lineno, line, "empty line")
        entries.append(parse_ima_line(line, lineno, log_alg=log_alg))
    return entries


def format_ima_line(entry: ImaEntry) -> str:
    """The ASCII log line the kernel prints for ``entry`` (the inverse of parse_ima_line)."""
    if entry.template_name == "ima":
        digest = entry.digest.hex()
    else:
        digest = f"{entry.digest_alg}:{entry.digest.hex()}"
    parts = [str(entry.pcr), entry.template_hash.hex(), entry.template_name, digest, entry.path]
    if entry.signature is not None:
        parts.append(entry.signature.hex())
    if entry.buffer is not None:
        parts.append(entry.buffer.hex())
    return " ".join(parts)
