"""What one measured-boot policy evaluation has seen, and the digest and key tests it uses.

The building blocks of keylime/mba/elchecking/tests.py that attest_protocol.mb.example needs:
a digest from a list (``DigestsTest``), keys only from a list (``KeySubset``), a list holding
at least some keys (``KeySuperset``), and "at most once" (``OnceTest``).  Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from attest_protocol.mb.refstate import Digest, Refstate, Signature

# Each GUID in the spelling of current tpm2-tools and in the byte-swapped spelling of
# tpm2-tools < 5.2, which Keylime accepts too (keylime issue #1003).
EFI_GLOBAL = ("61dfe48b-ca93-d211-aa0d-00e098032b8c", "8be4df61-93ca-11d2-aa0d-00e098032b8c")
SECURITY_DB = ("cbb219d7-3a3d-9645-a3bc-dad00e67656f", "d719b2cb-3d3a-4596-a3bc-dad00e67656f")
SHIM_LOCK = ("50ab5d60-46e0-0043-abb6-3dd810dd8b23", "605dab50-e046-4300-abb6-3dd810dd8b23")
CERT_X509 = ("a159c0a5-e494-a74a-87b5-ab155c2bf072", "a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
CERT_SHA256 = ("2616c4c1-4c50-9240-aca9-41f936934328", "c1c41626-504c-4092-aca9-41f936934328")


def has_digest(event: Any, good: Mapping[str, set[str]]) -> bool:
    """True if one of the event's digests, in an algorithm ``good`` names, is listed there."""
    digests = event.get("Digests") if isinstance(event, dict) else None
    if not isinstance(digests, list):
        return False
    for entry in digests:
        if not isinstance(entry, dict):
            return False
        alg, value = entry.get("AlgorithmId"), entry.get("Digest")
        if not isinstance(alg, str) or not isinstance(value, str):
            return False
        if value in good.get(alg, ()):
            return True
    return False


def good(*digests: Digest) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for digest in digests:
        for alg, value in digest.items():
            out.setdefault(alg, set()).add(value)
    return out


def event_text(event: Any) -> Any:
    body = event.get("Event") if isinstance(event, dict) else None
    return body.get("String") if isinstance(body, dict) else None


def sig_in(key: Any, allowed: frozenset[Signature]) -> bool:
    if not isinstance(key, dict):
        return False
    owner, data = key.get("SignatureOwner"), key.get("SignatureData")
    return isinstance(owner, str) and isinstance(data, str) and (owner, data) in allowed


def key_subset(lists: Any, types: tuple[str, ...], allowed: frozenset[Signature]) -> bool:
    """Every signature list is of one of ``types`` and holds only ``allowed`` signatures."""
    if not isinstance(lists, list):
        return False
    for sig_list in lists:
        if not isinstance(sig_list, dict) or sig_list.get("SignatureType") not in types:
            return False
        keys = sig_list.get("Keys")
        if not isinstance(keys, list) or not all(sig_in(k, allowed) for k in keys):
            return False
    return True


def key_superset(lists: Any, sig_type: str, required: frozenset[Signature]) -> bool:
    """Exactly one signature list, of ``sig_type``, holding at least ``required``."""
    if not isinstance(lists, list) or len(lists) != 1 or not isinstance(lists[0], dict):
        return False
    if lists[0].get("SignatureType") != sig_type or not isinstance(lists[0].get("Keys"), list):
        return False
    present = set()
    for key in lists[0]["Keys"]:
        if not isinstance(key, dict) or set(key) != {"SignatureOwner", "SignatureData"}:
            return False
        owner, data = key["SignatureOwner"], key["SignatureData"]
        if not isinstance(owner, str) or not isinstance(data, str):
            return False
        present.add((owner, data))
    return required <= present


class Pass:
    """One evaluation: what was seen once, and the events kept for the final check."""

    def __init__(self, ref: Refstate) -> None:
        self.ref = ref
        self.seen: set[str] = set()
        self.config_flags = 0
        self.kept: dict[str, list[Any]] = {
            k: [] for k in ("bsas", "ipl9s", "vmlinuz", "cmdlines", "scrtm", "blobs")
        }

    def once(self, key: str) -> str:
        if key in self.seen:
            return "may appear only once"
        self.seen.add(key)
        return ""

    def keep(self, key: str, value: Any) -> str:
        self.kept[key].append(value)
        return ""


Rule = Callable[[Pass, Any], str]
