"""Keylime's ``example`` measured-boot policy: a boot event log against a reference state.

The same verdicts as keylime/mba/elchecking/example.py (with the test combinators of
keylime/mba/elchecking/tests.py), written as one pass over the events:

* every event's (PCR, type) must be one the policy knows, each with its own rule: the Spec ID
  event, microcode and handoff tables at most once; S-CRTM version and firmware blobs, boot
  applications (PCR 4), initrd and vmlinuz loads (PCR 9) and the kernel command line (PCR 8)
  are collected for the final check; separators and EFI actions must hold the standard
  values and digests; up to four platform-config-flag events;
* UEFI variables: SecureBoot must be on (off without Secure Boot); PK and KEK may only hold
  listed X.509 keys, db (and vendor_db) listed X.509 keys or SHA-256 hashes; dbx must be one
  SHA-256 list holding at least every listed hash; each of PK, KEK, db, dbx at most once;
  MokList / MokListX (PCR 14) must have a listed digest;
* finally one of ``kernels`` must match: shim, grub and kernel (once or twice) as the boot
  applications in order (shim and grub only, without Secure Boot), one initrd, one vmlinuz
  (its digest checked only without Secure Boot), one ``kernel_cmdline`` matching the regular
  expression - and one ``scrtm_and_bios`` entry: the S-CRTM and the firmware blobs in order.

Input is the event list of attest_protocol.eventlog.describe; output "" for accept, else the
reason.  Pure.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from attest_protocol.mb.refstate import Digest, Firmware, Kernel, Refstate
from attest_protocol.mb.state import EFI_GLOBAL, Pass, Rule, event_text, good, has_digest
from attest_protocol.mb.variables import AUTHORITY, DRIVER_CONFIG, variable_rule

_ALGS = ("sha1", "sha256", "sha384", "sha512", "sm3_256")
# PFP Table 9 (and keylime tests.py EvEfiActionTest): the EV_EFI_ACTION texts per PCR.
EFI_ACTIONS = {
    1: ("Entering ROM Based Setup",),
    4: (
        "Calling EFI Application from Boot Option",
        "Returning from EFI Application from Boot Option",
    ),
    5: (
        "Exit Boot Services Invocation",
        "Exit Boot Services Returned with Failure",
        "Exit Boot Services Returned with Success",
    ),
    6: ("UEFI Debug Mode",),
}
_BOOT_VARIABLE = re.compile("BootOrder|Boot[0-9a-fA-F]+")
_PCR9_IGNORED = (re.compile(r".*/loader/entries.*"), re.compile(r".*/grub.*"))
_VMLINUZ = re.compile(r".*/vmlinuz.*")
_INITRD = (re.compile(r".*/initrd.*"), re.compile(r".*/initramfs.*"))
_GRUB_CMD = re.compile("grub_cmd: .*", re.DOTALL)
_KERNEL_CMDLINE = re.compile("kernel_cmdline: .*")
PLATFORM_CONFIG_FLAGS_MAX = 4


def _all_digests(data: bytes) -> dict[str, set[str]]:
    out = {}
    for alg in _ALGS:
        try:
            out[alg] = {hashlib.new("sm3" if alg == "sm3_256" else alg, data).hexdigest()}
        except ValueError:  # no SM3 in this OpenSSL: no event can carry it either
            continue
    return out


_SEPARATORS = {"00000000": _all_digests(bytes(4)), "FFFFFFFF": _all_digests(b"\xff" * 4)}
_ACTION_DIGESTS = {
    text: _all_digests(text.encode()) for texts in EFI_ACTIONS.values() for text in texts
}


def _once_rule(key: str) -> Rule:
    return lambda run, _event: run.once(key)


def _accept(_run: Pass, _event: Any) -> str:
    return ""


def _separator(_run: Pass, event: Any) -> str:
    text = event.get("Event")
    wanted = _SEPARATORS.get(text) if isinstance(text, str) else None
    ok = wanted is not None and has_digest(event, wanted)
    return "" if ok else "is not a valid separator"


def _efi_action(pcr: int) -> Rule:
    def rule(_run: Pass, event: Any) -> str:
        text = event.get("Event")
        if isinstance(text, str) and text in EFI_ACTIONS[pcr]:
            if has_digest(event, _ACTION_DIGESTS[text]):
                return ""
        return f"is not an EV_EFI_ACTION expected in PCR {pcr}"

    return rule


def _platform_config_flags(run: Pass, _event: Any) -> str:
    run.config_flags += 1
    ok = run.config_flags <= PLATFORM_CONFIG_FLAGS_MAX
    return "" if ok else f"more than {PLATFORM_CONFIG_FLAGS_MAX} platform config flag events"


def _boot_variable(_run: Pass, event: Any) -> str:
    body = event.get("Event")
    if not isinstance(body, dict) or body.get("VariableName") not in EFI_GLOBAL:
        return "is not a global UEFI variable"
    name = body.get("UnicodeName")
    if "VariableData" not in body or not isinstance(name, str):
        return "is not a UEFI variable"
    return "" if _BOOT_VARIABLE.fullmatch(name) else f"boot variable {name!a} is not a boot entry"


def _pcr14_ipl(run: Pass, event: Any) -> str:
    text = event_text(event)
    if text == "MokList" and has_digest(event, good(*run.ref.mokdig)):
        return ""
    if text == "MokListX" and has_digest(event, good(*run.ref.mokxdig)):
        return ""
    if text == "MokListTrusted":
        return run.once("ipl:MokListTrusted")
    return "MokList / MokListX digest not in the reference state"


def _pcr9_ipl(run: Pass, event: Any) -> str:
    text = event_text(event)
    if not isinstance(text, str):
        return "has no String"
    if any(p.fullmatch(text) for p in _PCR9_IGNORED):
        return ""
    if _VMLINUZ.fullmatch(text):
        return run.keep("vmlinuz", event)
    if any(p.fullmatch(text) for p in _INITRD):
        return run.keep("ipl9s", event)
    return f"PCR 9 load {text[:80]!a} is not a kernel, initrd or boot-loader file"


def _pcr8_ipl(run: Pass, event: Any) -> str:
    text = event_text(event)
    if isinstance(text, str) and _GRUB_CMD.fullmatch(text):
        return ""
    if isinstance(text, str) and _KERNEL_CMDLINE.fullmatch(text):
        return run.keep("cmdlines", text)
    return "PCR 8 event is neither a grub command nor a kernel command line"


RULES: dict[tuple[int, str], Rule] = {
    (0, "EV_NO_ACTION"): _once_rule("EV_NO_ACTION"),
    (1, "EV_CPU_MICROCODE"): _once_rule("EV_CPU_MICROCODE"),
    (1, "EV_EFI_HANDOFF_TABLES"): _once_rule("EV_EFI_HANDOFF_TABLES"),
    (1, "EV_EFI_HANDOFF_TABLES2"): _once_rule("EV_EFI_HANDOFF_TABLES2"),
    (0, "EV_S_CRTM_VERSION"): lambda run, e: run.keep("scrtm", e),
    (0, "EV_EFI_PLATFORM_FIRMWARE_BLOB"): lambda run, e: run.keep("blobs", e),
    (0, "EV_EFI_PLATFORM_FIRMWARE_BLOB2"): lambda run, e: run.keep("blobs", e),
    (7, "EV_EFI_VARIABLE_DRIVER_CONFIG"): variable_rule(DRIVER_CONFIG),
    (7, "EV_EFI_VARIABLE_AUTHORITY"): variable_rule(AUTHORITY),
    (2, "EV_EFI_BOOT_SERVICES_DRIVER"): _accept,
    (1, "EV_EFI_VARIABLE_BOOT"): _boot_variable,
    (1, "EV_PLATFORM_CONFIG_FLAGS"): _platform_config_flags,
    (1, "EV_EFI_ACTION"): _efi_action(1),
    (4, "EV_EFI_ACTION"): _efi_action(4),
    (5, "EV_EFI_ACTION"): _efi_action(5),
    **{(pcr, "EV_SEPARATOR"): _separator for pcr in range(8)},
    (4, "EV_EFI_BOOT_SERVICES_APPLICATION"): lambda run, e: run.keep("bsas", e),
    (14, "EV_IPL"): _pcr14_ipl,
    (9, "EV_IPL"): _pcr9_ipl,
    (8, "EV_IPL"): _pcr8_ipl,
    (5, "EV_EFI_GPT_EVENT"): _once_rule("EV_EFI_GPT_EVENT"),
}


def _in_order(events: list[Any], digests: list[Digest]) -> bool:
    return len(events) == len(digests) and all(
        has_digest(e, good(d)) for e, d in zip(events, digests)
    )


def _kernel_matches(kept: Mapping[str, list[Any]], kernel: Kernel, secureboot: bool) -> bool:
    shim, grub, image = ({"sha256": d} for d in (kernel.shim, kernel.grub, kernel.kernel))
    if secureboot:
        bsas_ok = _in_order(kept["bsas"], [shim, grub, image]) or _in_order(
            kept["bsas"], [shim, grub, image, image]
        )
        vmlinuz_ok = len(kept["vmlinuz"]) == 1
    else:
        bsas_ok = _in_order(kept["bsas"], [shim, grub])
        vmlinuz_ok = _in_order(kept["vmlinuz"], [image])
    cmdlines = kept["cmdlines"]
    return (
        bsas_ok
        and _in_order(kept["ipl9s"], [{"sha256": kernel.initrd}])
        and vmlinuz_ok
        and len(cmdlines) == 1
        and kernel.cmdline.fullmatch(cmdlines[0]) is not None
    )


def _firmware_matches(kept: Mapping[str, list[Any]], firmware: Firmware) -> bool:
    return _in_order(kept["scrtm"], [firmware.scrtm]) and _in_order(
        kept["blobs"], list(firmware.blobs)
    )


def evaluate_example(ref: Refstate, events: list[Any]) -> str:
    """ "" if the log passes the ``example`` policy for ``ref``, else why not."""
    run = Pass(ref)
    for event in events:
        if not isinstance(event, dict):
            return "an event is not an object"
        pcr, kind = event.get("PCRIndex"), event.get("EventType")
        key = (pcr, kind)
        rule = RULES.get((pcr, kind)) if isinstance(pcr, int) and isinstance(kind, str) else None
        if rule is None:
            return f"event {event.get('EventNum')}: unexpected (PCR, type) {key!a}"
        reason = rule(run, event)
        if reason:
            return f"event {event.get('EventNum')} ({key[1]}, PCR {key[0]}): {reason}"
    if not any(_kernel_matches(run.kept, k, ref.secureboot) for k in ref.kernels):
        return "no kernel of the reference state matches the boot applications, initrd, "
        "vmlinuz and kernel command line"
    if not any(_firmware_matches(run.kept, f) for f in ref.firmware):
        return (
            "no scrtm_and_bios entry of the reference state matches the S-CRTM and firmware blobs"
        )
    return ""
