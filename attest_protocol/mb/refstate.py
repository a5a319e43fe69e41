"""The reference state of Keylime's ``example`` measured-boot policy, checked and normalised.

``keylime-policy create measured-boot`` writes it; keylime/mba/elchecking/example.py
``Example.refstate_to_test`` checks it when a boot log is evaluated (not when it is stored), and
anything it refuses fails that evaluation.  The same conditions here, in the same terms:

* ``has_secureboot`` (default true, read for its truth value);
* ``kernels``: a list of objects with ``shim_authcode_sha256``, ``grub_authcode_sha256``,
  ``initrd_plain_sha256`` (``0x`` + lowercase hex), ``kernel_cmdline`` (a regular expression)
  and ``kernel_authcode_sha256`` - or, without Secure Boot, ``vmlinuz_plain_sha256``;
* ``scrtm_and_bios``: a list of ``{"scrtm": digest, "platform_firmware": [digest, ...]}``;
* ``pk``, ``kek``, ``db``, ``dbx`` (and optional ``vendor_db``): lists of
  ``{"SignatureOwner": guid, "SignatureData": "0x..."}``; ``mokdig``, ``mokxdig``: digests.

A digest is ``{"sha256": "0x..."}`` (any algorithm names).  Values come out without ``0x``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from attest_protocol.mb.errors import RefstateError

_HEX = re.compile("0x[0-9a-f]+")
Digest = Mapping[str, str]
Signature = tuple[str, str]  # (SignatureOwner, SignatureData without 0x)
_SIG_FIELDS = ("pk", "kek", "db", "vendor_db", "dbx")
_REQUIRED = ("pk", "kek", "db", "dbx", "mokdig", "mokxdig")


@dataclass(frozen=True)
class Kernel:
    shim: str
    grub: str
    kernel: str  # the kernel's Authenticode digest (Secure Boot), else vmlinuz's plain digest
    initrd: str
    cmdline: re.Pattern[str]


@dataclass(frozen=True)
class Firmware:
    scrtm: Digest
    blobs: tuple[Digest, ...]


@dataclass(frozen=True)
class Refstate:
    secureboot: bool
    kernels: tuple[Kernel, ...]
    firmware: tuple[Firmware, ...]
    # None: the variable may hold anything (Secure Boot off and the list is empty).
    keys: Mapping[str, frozenset[Signature] | None]
    mokdig: tuple[Digest, ...]
    mokxdig: tuple[Digest, ...]


def _hex(value: Any, what: str) -> str:
    if isinstance(value, str) and _HEX.fullmatch(value):
        return value[2:]
    raise RefstateError(f"{what}: {value!r:.80} is not 0x followed by lowercase hex digits")


def _digest(value: Any, what: str) -> Digest:
    if not isinstance(value, dict):
        raise RefstateError(f"{what}: a digest must be an object")
    return {str(alg): _hex(v, f"{what}.{alg}") for alg, v in value.items()}


def _fields(value: Any, names: tuple[str, ...], what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RefstateError(f"{what}: expected an object")
    missing = [n for n in names if n not in value]
    if missing:
        raise RefstateError(f"{what}: lacks {', '.join(missing)}")
    return value


def _kernel(value: Any, secureboot: bool, at: int) -> Kernel:
    last = "kernel_authcode_sha256" if secureboot else "vmlinuz_plain_sha256"
    names = ("shim_authcode_sha256", "grub_authcode_sha256", last, "initrd_plain_sha256")
    doc = _fields(value, (*names, "kernel_cmdline"), f"kernels[{at}]")
    digests = [_hex(doc[n], f"kernels[{at}].{n}") for n in names]
    cmdline = doc["kernel_cmdline"]
    if not isinstance(cmdline, str):
        raise RefstateError(f"kernels[{at}].kernel_cmdline: expected a string")
    try:
        pattern = re.compile("kernel_cmdline: " + cmdline)
    except re.error as exc:
        raise RefstateError(f"kernels[{at}].kernel_cmdline: {exc}") from None
    return Kernel(digests[0], digests[1], digests[2], digests[3], pattern)


def _firmware(value: Any, at: int) -> Firmware:
    doc = _fields(value, ("scrtm", "platform_firmware"), f"scrtm_and_bios[{at}]")
    blobs = doc["platform_firmware"]
    if not isinstance(blobs, list):
        raise RefstateError(f"scrtm_and_bios[{at}].platform_firmware: expected a list")
    return Firmware(
        _digest(doc["scrtm"], f"scrtm_and_bios[{at}].scrtm"),
        tuple(_digest(b, f"scrtm_and_bios[{at}].platform_firmware") for b in blobs),
    )


def _signatures(value: Any, what: str) -> frozenset[Signature]:
    # Keylime iterates whatever it gets: a list of signatures, or an empty string or object.
    if not isinstance(value, (list, str, dict)):
        raise RefstateError(f"{what}: expected a list of signatures")
    out = set()
    for sig in value:
        doc = _fields(sig, ("SignatureOwner", "SignatureData"), what)
        owner, data = doc["SignatureOwner"], doc["SignatureData"]
        if not isinstance(owner, str) or not isinstance(data, str) or not data.startswith("0x"):
            raise RefstateError(f"{what}: SignatureOwner and SignatureData (0x...) must be text")
        out.add((owner, data[2:]))
    return frozenset(out)


def _digests(value: Any, what: str) -> tuple[Digest, ...]:
    if not isinstance(value, list):
        raise RefstateError(f"{what}: expected a list of digests")
    return tuple(_digest(d, what) for d in value)


def load_refstate(doc: Any) -> Refstate:
    """The checked reference state, or RefstateError naming the first thing wrong."""
    if not isinstance(doc, dict):
        raise RefstateError("the reference state must be a JSON object")
    secureboot = bool(doc.get("has_secureboot", True))
    kernels = doc.get("kernels")
    if not isinstance(kernels, list):
        raise RefstateError("'kernels' must be a list")
    parsed_kernels = tuple(_kernel(k, secureboot, i) for i, k in enumerate(kernels))
    firmware = doc.get("scrtm_and_bios")
    if firmware is None:
        raise RefstateError("'scrtm_and_bios' is missing")
    if not isinstance(firmware, list):
        raise RefstateError("'scrtm_and_bios' must be a list")
    parsed_firmware = tuple(_firmware(f, i) for i, f in enumerate(firmware))
    missing = [n for n in _REQUIRED if n not in doc]
    if missing:
        raise RefstateError(f"the reference state lacks {', '.join(missing)}")
    keys: dict[str, frozenset[Signature] | None] = {}
    for name in _SIG_FIELDS:
        value = doc.get(name, [])
        # Without Secure Boot an empty key list means "not checked" (example.py).
        keys[name] = None if not secureboot and not value else _signatures(value, name)
    return Refstate(
        secureboot,
        parsed_kernels,
        parsed_firmware,
        keys,
        _digests(doc["mokdig"], "mokdig"),
        _digests(doc["mokxdig"], "mokxdig"),
    )
