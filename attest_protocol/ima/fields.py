"""IMA template fields: how each is printed in the ASCII log and serialised for hashing.

The kernel documents the fields in Documentation/security/IMA-templates.rst and serialises
them in security/integrity/ima/ima_template_lib.c; the template hash is computed over that
serialisation in ima_crypto.c (ima_calc_field_array_hash_tfm):

* every field of a non-legacy template is preceded by its length as a little-endian u32;
* ``d-ng`` holds ``<algo>`` ``:`` NUL ``<digest>`` (ima_eventdigest_init_common);
* ``n-ng`` holds the name and its terminating NUL;
* ``sig`` and ``buf`` hold raw bytes (possibly none);
* the legacy ``ima`` template (fields ``d|n``) has no length prefixes: the raw digest, then the
  name NUL-padded to IMA_EVENT_NAME_LEN_MAX + 1 = 256 bytes.
"""

from __future__ import annotations

import re
import struct

from attest_protocol.errors import AttestProtocolError

# Digest sizes by kernel hash algorithm name (include/crypto/hash_info.h, crypto/hash_info.c):
# the names a ``d-ng`` field can carry before its colon.
IMA_DIGEST_SIZES: dict[str, int] = {
    "md4": 16,
    "md5": 16,
    "sha1": 20,
    "rmd160": 20,
    "sha256": 32,
    "sha384": 48,
    "sha512": 64,
    "sha224": 28,
    "rmd128": 16,
    "rmd256": 32,
    "rmd320": 40,
    "wp256": 32,
    "wp384": 48,
    "wp512": 64,
    "tgr128": 16,
    "tgr160": 20,
    "tgr192": 24,
    "sm3": 32,
    "streebog256": 32,
    "streebog512": 64,
    "sha3-256": 32,
    "sha3-384": 48,
    "sha3-512": 64,
}
# The legacy ``d`` field of the ``ima`` template carries no algorithm name; the kernel only
# records SHA-1 or MD5 there (ima_eventdigest_init), told apart by length.
LEGACY_DIGEST_ALGS: dict[int, str] = {20: "sha1", 16: "md5"}
# IMA_EVENT_NAME_LEN_MAX (security/integrity/ima/ima.h): the legacy ``n`` field is the name
# padded with NULs to this many bytes plus one.
IMA_EVENT_NAME_LEN_MAX = 255
LEGACY_NAME_FIELD_BYTES = IMA_EVENT_NAME_LEN_MAX + 1
# struct signature_v2_hdr (security/integrity/integrity.h): type, version, hash_algo (u8 each),
# keyid (be32), sig_size (be16), then sig_size bytes of signature.
SIGNATURE_V2_HEADER = struct.Struct(">BBBIH")

_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*", re.ASCII)


class FieldError(AttestProtocolError, ValueError):
    """A field value that cannot be part of a valid entry; the parser adds line and column."""


def parse_hex(text: str, what: str) -> bytes:
    # bytes.fromhex() tolerates whitespace between bytes; the kernel prints none, so a strict
    # pattern keeps "ab cd" or tabs from sneaking through.
    if not _HEX.fullmatch(text):
        raise FieldError(f"{what} is not an even-length hex string")
    return bytes.fromhex(text)


def parse_ng_digest(text: str) -> tuple[str, bytes]:
    """A ``d-ng`` value as printed: ``<algo>:<hex>``."""
    alg, sep, hexdigest = text.partition(":")
    if not sep:
        raise FieldError("d-ng digest has no '<algo>:' prefix")
    return alg, parse_hex(hexdigest, "file digest")


def check_digest(alg: str, digest: bytes) -> None:
    size = IMA_DIGEST_SIZES.get(alg)
    if size is None:
        raise FieldError(f"unknown digest algorithm {alg!r}")
    if len(digest) != size:
        raise FieldError(f"{alg} digest has {len(digest)} bytes, expected {size}")


def check_signature(sig: bytes) -> None:
    """An ``ima-sig`` signature is empty (file not signed) or a whole signature_v2_hdr blob."""
    if not sig:
        return
    if len(sig) < SIGNATURE_V2_HEADER.size:
        raise FieldError("signature is shorter than its header")
    sig_size = SIGNATURE_V2_HEADER.unpack_from(sig)[4]
    if SIGNATURE_V2_HEADER.size + sig_size != len(sig):
        raise FieldError(
            f"signature header announces {sig_size} bytes, "
            f"{len(sig) - SIGNATURE_V2_HEADER.size} follow"
        )


def encode_name(path: str) -> bytes:
    # The kernel prints names as raw bytes; a reader that decodes with surrogateescape gets
    # them back unchanged here.
    return path.encode("utf-8", "surrogateescape")


def _u32_field(data: bytes) -> bytes:
    return struct.pack("<I", len(data)) + data


def ng_digest_field(alg: str, digest: bytes) -> bytes:
    return _u32_field(alg.encode("ascii") + b":\0" + digest)


def ng_name_field(path: str) -> bytes:
    return _u32_field(encode_name(path) + b"\0")


def blob_field(data: bytes) -> bytes:
    return _u32_field(data)


def legacy_fields(digest: bytes, path: str) -> bytes:
    name = encode_name(path)
    return digest + name + b"\0" * (LEGACY_NAME_FIELD_BYTES - len(name))
