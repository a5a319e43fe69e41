"""An IMA emulator: append measurement entries to a log file and extend PCR 10 to match.

For tests and the demo, where no kernel measures anything: each :meth:`ImaEmulator.measure`
does what the kernel's ima_store_template does for one file (security/integrity/ima/
ima_api.c, ima_queue.c ima_add_template_entry): it writes the ASCII line first, then extends
PCR 10 of every active bank with the template data hashed in that bank's algorithm (one
TPM2_PCR_Extend carrying a digest per bank, as tpm_pcr_extend does).  The line's template hash
is the SHA-1 one, as in ``ascii_runtime_measurements``.  Writing first means a reader may see
an entry the quote does not cover yet, never the reverse, which the verifier tolerates
(attest_protocol.ima.replay, Pcr10Replay.feed_until).

Entries are built with attest_protocol.ima, so the log replays with :class:`Pcr10Replay` to
exactly the PCR values::

    emu = ImaEmulator(swtpm.tcti, log_path)
    emu.boot_aggregate()
    emu.measure("/usr/bin/true", b"...")
    emu.close()

CLI: ``python -m tools.ima_emulator --tcti swtpm:host=127.0.0.1,port=2321 --log ml.txt PATH...``
(measures each file's contents; ``--boot-aggregate`` writes that entry first).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Optional

from tpm2_pytss import ESYS_TR, TPM2_CAP, TPML_DIGEST_VALUES, TPMT_HA

from attest_protocol.ima import IMA_PCR, ImaEntry, format_ima_line
from attest_protocol.tpm2.constants import TpmAlg
from edge_agent.tpm import esys_ops

# The template of a default kernel policy (CONFIG_IMA_DEFAULT_TEMPLATE) and the file hash it
# uses in d-ng (CONFIG_IMA_DEFAULT_HASH, sha256 on current distributions).
DEFAULT_TEMPLATE = "ima-ng"
FILE_HASH = "sha256"
TEMPLATES = ("ima-ng", "ima-sig")
# boot_aggregate hashes PCRs 0-7, and 8-9 too in a non-SHA-1 bank (ima_crypto.c,
# ima_calc_boot_aggregate_tfm; Linux 5.8+); the kernel prefers the bank of its own hash.
BOOT_AGGREGATE_NAME = "boot_aggregate"
BOOT_AGGREGATE_PCRS_SHA1 = range(8)
BOOT_AGGREGATE_PCRS = range(10)
# The banks a TPM2_PCR_Extend may carry (attest_protocol knows how to replay these).
EXTENDABLE_BANKS = (TpmAlg.SHA1, TpmAlg.SHA256, TpmAlg.SHA384, TpmAlg.SHA512)


def make_entry(
    path: str,
    file_digest: bytes,
    *,
    template: str = DEFAULT_TEMPLATE,
    digest_alg: str = FILE_HASH,
    signature: bytes = b"",
    lineno: int = 1,
) -> ImaEntry:
    """The entry the kernel would log for ``path`` with ``file_digest`` (SHA-1 template hash)."""
    if template not in TEMPLATES:
        raise ValueError(f"template must be one of {TEMPLATES}, not {template!r}")
    sig = signature if template == "ima-sig" else None
    draft = ImaEntry(lineno, IMA_PCR, bytes(20), template, digest_alg, file_digest, path, sig)
    template_hash = hashlib.sha1(draft.template_data(), usedforsecurity=False).digest()
    return dataclasses.replace(draft, template_hash=template_hash)


def measurement_line(path: str, content: bytes, **kwargs: Any) -> str:
    """The log line (no newline) for a file ``path`` holding ``content``."""
    digest = hashlib.new(FILE_HASH, content).digest()
    return format_ima_line(make_entry(path, digest, **kwargs))


def boot_aggregate_entry(pcrs: Mapping[int, bytes], bank: TpmAlg) -> ImaEntry:
    """The first entry: the hash of PCRs 0-7 (0-9 outside SHA-1) in ``bank``'s algorithm."""
    wanted = BOOT_AGGREGATE_PCRS_SHA1 if bank == TpmAlg.SHA1 else BOOT_AGGREGATE_PCRS
    name = bank.name.lower()
    digest = hashlib.new(name, b"".join(pcrs[i] for i in wanted)).digest()
    return make_entry(BOOT_AGGREGATE_NAME, digest, digest_alg=name)


def active_banks(esys: Any, pcr: int = IMA_PCR) -> tuple[TpmAlg, ...]:
    """The banks in which ``pcr`` is allocated (TPM2_GetCapability(TPM_CAP_PCRS))."""
    with esys_ops.tss("listing the allocated PCR banks"):
        _more, data = esys.get_capability(TPM2_CAP.PCRS, 0, 1)
    banks = []
    for sel in data.data.assignedPCR:
        select = bytes(sel.pcrSelect)[: int(sel.sizeofSelect)]
        byte, bit = divmod(pcr, 8)
        if int(sel.hash) in EXTENDABLE_BANKS and byte < len(select) and select[byte] >> bit & 1:
            banks.append(TpmAlg(int(sel.hash)))
    return tuple(banks)


class ImaEmulator:
    """Appends to ``log_path`` and extends PCR 10 on the TPM behind ``tcti``; blocking."""

    def __init__(
        self, tcti: str, log_path: str | Path, *, template: str = DEFAULT_TEMPLATE
    ) -> None:
        self.template = template
        self._esys, _vendor = esys_ops.open_esapi(tcti)
        self.banks = active_banks(self._esys)
        self._log: BinaryIO = open(log_path, "ab")
        self.count = 0

    def boot_aggregate(self) -> ImaEntry:
        """Log and extend the boot_aggregate entry (the kernel's first)."""
        bank = TpmAlg.SHA256 if TpmAlg.SHA256 in self.banks else TpmAlg.SHA1
        wanted = BOOT_AGGREGATE_PCRS_SHA1 if bank == TpmAlg.SHA1 else BOOT_AGGREGATE_PCRS
        pcrs = esys_ops.pcr_read(self._esys, bank, wanted)
        return self._record(boot_aggregate_entry(pcrs, bank))

    def measure(self, path: str, content: bytes, *, signature: bytes = b"") -> ImaEntry:
        """Log and extend a measurement of a file ``path`` holding ``content``."""
        digest = hashlib.new(FILE_HASH, content).digest()
        entry = make_entry(path, digest, template=self.template, signature=signature)
        return self._record(entry)

    def _record(self, entry: ImaEntry) -> ImaEntry:
        entry = dataclasses.replace(entry, lineno=self.count + 1)
        # The line first, flushed, then the PCR: as the kernel adds to the list, then extends.
        self._log.write(format_ima_line(entry).encode("utf-8", "surrogateescape") + b"\n")
        self._log.flush()
        self._extend({bank: entry.extend_digest(bank) for bank in self.banks})
        self.count += 1
        return entry

    def _extend(self, digests: Mapping[TpmAlg, bytes]) -> None:
        # TPMT_HA is hashAlg (u16) || digest (TCG TPM 2.0 Part 2 §10.3.2).
        values = [TPMT_HA.unmarshal(int(a).to_bytes(2, "big") + d)[0] for a, d in digests.items()]
        with esys_ops.tss(f"extending PCR {IMA_PCR}"):
            self._esys.pcr_extend(ESYS_TR.PCR0 + IMA_PCR, TPML_DIGEST_VALUES(values))

    def close(self) -> None:
        self._log.close()
        self._esys.close()


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.ima_emulator", description=__doc__)
    parser.add_argument("--tcti", required=True, help="tpm2-pytss TCTI string of the TPM")
    parser.add_argument("--log", required=True, type=Path, help="IMA ASCII log to append to")
    parser.add_argument("--template", choices=TEMPLATES, default=DEFAULT_TEMPLATE)
    parser.add_argument("--boot-aggregate", action="store_true", help="log boot_aggregate first")
    parser.add_argument("paths", nargs="*", type=Path, help="files to measure")
    args = parser.parse_args(argv)
    emulator = ImaEmulator(args.tcti, args.log, template=args.template)
    try:
        if args.boot_aggregate:
            emulator.boot_aggregate()
        for path in args.paths:
            emulator.measure(str(path.resolve()), path.read_bytes())
    finally:
        emulator.close()
    print(f"{emulator.count} entries appended to {args.log}")


if __name__ == "__main__":
    main()
