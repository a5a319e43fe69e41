"""One IMA measurement: the ASCII log line, the frozen entry, and its template hash.

A line of /sys/kernel/security/ima/ascii_runtime_measurements reads
``PCR template-hash template-name template-data`` (ima_fs.c, ima_ascii_measurements_show),
fields separated by one space.  The template data of ``ima-sig`` and ``ima-buf`` always has
three fields, the last possibly empty, so such a line may end in a space; ``ima`` and
``ima-ng`` names are the rest of the line.  Field layouts: Documentation/security/
IMA-templates.rst; serialisation for the template hash: see :mod:`attest_protocol.ima.fields`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from cryptography.hazmat.primitives import hashes

from attest_protocol.errors import AlgorithmError
from attest_protocol.ima import fields
from attest_protocol.ima.errors import ImaTemplateHashError
from attest_protocol.ima.fields import FieldError
from attest_protocol.tpm2.constants import TpmAlg, digest_size, hash_for_alg

# The longest line accepted.  A path is at most PATH_MAX (4096) bytes, a file signature a few
# hundred bytes, but ima-buf carries whole key certificates and device-mapper tables, printed as
# hex (twice their size); 64 KiB holds those with room while bounding a hostile line.
MAX_IMA_LINE_CHARS = 64 * 1024
# The highest PCR index a TPM 2.0 PC Client platform has (PC Client PTP: 24 PCRs).
MAX_PCR_INDEX = 23
# The four templates Keylime 7.14 checks (keylime/ima/ast.py, Entry._mode_lookup).
TEMPLATES = ("ima", "ima-ng", "ima-sig", "ima-buf")


def _hash(alg: TpmAlg, data: bytes) -> bytes:
    ctx = hashes.Hash(hash_for_alg(alg))
    ctx.update(data)
    return ctx.finalize()


@dataclasses.dataclass(frozen=True)
class ImaEntry:
    """One measurement.  ``digest_alg`` is the kernel's algorithm name ("sha256", "md5", ...).

    ``signature`` is set (possibly empty) only for ``ima-sig``, ``buffer`` only for ``ima-buf``.
    ``log_alg`` is the algorithm of ``template_hash`` as printed in the log (SHA-1 unless the
    log is one of the kernel's per-bank ``ascii_runtime_measurements_<alg>`` files).
    Construction validates every field and raises :class:`FieldError` (a ``ValueError``).
    """

    lineno: int
    pcr: int
    template_hash: bytes
    template_name: str
    digest_alg: str
    digest: bytes
    path: str
    signature: Optional[bytes] = None
    buffer: Optional[bytes] = None
    log_alg: TpmAlg = TpmAlg.SHA1

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def is_violation(self) -> bool:
        """A ToMToU / open-writers violation: the kernel logs an all-zero template hash.

        ima_main.c (ima_add_violation) records zeros in the log but extends the PCR with all
        0xff bytes, in every bank (ima_queue.c, ima_pcr_extend of ima_template_entry digests).
        """
        return self.template_hash == bytes(len(self.template_hash))

    def template_data(self) -> bytes:
        """The template data serialised exactly as the kernel hashes it."""
        return _SERIALISERS[self.template_name](self)

    def extend_digest(self, bank: TpmAlg) -> bytes:
        """What the kernel extends into PCR ``pcr`` of ``bank`` for this entry.

        Each bank gets the template data hashed with the bank's own algorithm (ima_crypto.c,
        ima_calc_field_array_hash); the log shows only one of them.  Keylime does the same
        (keylime/ima/ast.py, Entry.pcr_template_hash).
        """
        if self.is_violation:
            return b"\xff" * digest_size(bank)
        return _hash(bank, self.template_data())

    def validate_template_hash(self) -> None:
        """Raise :class:`ImaTemplateHashError` unless ``template_hash`` covers the data.

        A violation entry has no hash to check, as Keylime treats it (ignore_tomtou_errors);
        whether to accept it is policy, decided by the verifier from ``is_violation``.
        """
        if self.is_violation:
            return
        computed = _hash(self.log_alg, self.template_data())
        if computed != self.template_hash:
            raise ImaTemplateHashError(self.lineno, self.template_hash, computed)


def _validate(e: ImaEntry) -> None:
    if not 0 <= e.pcr <= MAX_PCR_INDEX:
        raise FieldError(f"PCR {e.pcr} out of range 0..{MAX_PCR_INDEX}")
    try:
        size = digest_size(e.log_alg)
    except AlgorithmError as exc:
        raise FieldError(str(exc)) from None
    if len(e.template_hash) != size:
        raise FieldError(f"template hash has {len(e.template_hash)} bytes, expected {size}")
    if e.template_name not in TEMPLATES:
        raise FieldError(f"unknown template {e.template_name!r}")
    if "\0" in e.path or "\n" in e.path:
        raise FieldError("name contains NUL or newline")
    if (e.signature is None) == (e.template_name == "ima-sig"):
        raise FieldError("signature is present exactly for ima-sig")
    if (e.buffer is None) == (e.template_name == "ima-buf"):
        raise FieldError("buffer is present exactly for ima-buf")
    if e.template_name == "ima":
        _validate_legacy(e.digest_alg, e.digest, e.path)
    else:
        fields.check_digest(e.digest_alg, e.digest)
    if e.signature is not None:
        fields.check_signature(e.signature)


def _validate_legacy(alg: str, digest: bytes, path: str) -> None:
    if fields.LEGACY_DIGEST_ALGS.get(len(digest)) != alg:
        raise FieldError(f"'ima' template digest of {len(digest)} bytes cannot be {alg}")
    if len(fields.encode_name(path)) > fields.IMA_EVENT_NAME_LEN_MAX:
        raise FieldError(f"'ima' template name longer than {fields.IMA_EVENT_NAME_LEN_MAX} bytes")


_SERIALISERS: dict[str, Callable[[ImaEntry], bytes]] = {
    "ima": lambda e: fields.legacy_fields(e.digest, e.path),
    "ima-ng": lambda e: (
        fields.ng_digest_field(e.digest_alg, e.digest) + fields.ng_name_field(e.path)
    ),
    "ima-sig": lambda e: (
        fields.ng_digest_field(e.digest_alg, e.digest)
        + fields.ng_name_field(e.path)
        + fields.blob_field(e.signature or b"")
    ),
    "ima-buf": lambda e: (
        fields.ng_digest_field(e.digest_alg, e.digest)
        + fields.ng_name_field(e.path)
        + fields.blob_field(e.buffer or b"")
    ),
}
