"""Evaluate an IMA log given as ASCII text, with a lean path for the common, passing line.

Most of a real log is ``ima-ng`` entries for PCR 10 that are allowed by the policy.  For such a
line :func:`lean_ng` splits it, serialises the template data straight from the text, checks
the template hash and the policy, and returns the extend digest without building an
:class:`~attest_protocol.ima.ImaEntry`.  Anything else -- another template, a violation, a
field that does not look exactly as the kernel prints it, a template hash or policy failure --
returns None and the line goes through the full parser (``parse_ima_line``, which raises
``ImaParseError`` for a bad line: nothing is skipped) and the full checks of
:mod:`attest_protocol.policy.engine`, which also word every failure.  The lean path therefore
only ever decides "accepted", and only when the full path would too.
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Mapping
from typing import Callable, Optional

from attest_protocol.ima.entry import MAX_IMA_LINE_CHARS
from attest_protocol.ima.fields import IMA_DIGEST_SIZES
from attest_protocol.ima.log import parse_ima_line
from attest_protocol.policy.engine import Hashers, Round, check_entry, conclude, hash_proto
from attest_protocol.policy.model import RuntimePolicy
from attest_protocol.policy.verdict import ImaState, ImaVerdict
from attest_protocol.tpm2.constants import TpmAlg, digest_size

_U32 = struct.Struct("<I")
# How the kernel prints the PCR field of a PCR 10 entry and the ima-ng template name.
_PCR10_TEXT = "10"
_IMA_NG = "ima-ng"


LeanCheck = Callable[[str], Optional[bytes]]


def lean_ng(
    policy: RuntimePolicy, digests: Mapping[str, frozenset[bytes]], hs: Hashers, log_alg: TpmAlg
) -> LeanCheck:
    """The accept-only check for ``ima-ng`` lines (module docstring): a line -> its extend
    digest if it is a valid, allowed ima-ng entry for PCR 10, else None.

    A closure over locals: this runs once per log line, and local lookups are the cheapest.
    """
    match = policy.exclude_regex.match if policy.exclude_regex is not None else None
    get_allowed = digests.get
    log_copy = hash_proto(log_alg).copy
    bank_copy = None if log_alg == hs.bank_alg else hs.bank_proto.copy
    hash_hex_len = 2 * digest_size(log_alg)
    zero = bytes(digest_size(log_alg))
    pack = _U32.pack
    fromhex = bytes.fromhex
    # d-ng field head per algorithm: u32 length, "<alg>:\0" (ima_template_lib.c).
    heads = {
        alg: (size, 2 * size, pack(len(alg) + 2 + size) + alg.encode("ascii") + b":\0")
        for alg, size in IMA_DIGEST_SIZES.items()
    }

    def accept(line: str) -> Optional[bytes]:
        parts = line.split(" ", 4)
        if len(parts) != 5 or parts[2] != _IMA_NG or parts[0] != _PCR10_TEXT:
            return None
        hash_hex, path = parts[1], parts[4]
        alg, _, digest_hex = parts[3].partition(":")
        head = heads.get(alg)
        if head is None or len(hash_hex) != hash_hex_len or len(digest_hex) != head[1]:
            return None
        if len(line) > MAX_IMA_LINE_CHARS or "\0" in path:
            return None
        try:  # fromhex skips whitespace: the length checks below catch it
            template_hash = fromhex(hash_hex)
            digest = fromhex(digest_hex)
        except ValueError:
            return None
        if len(digest) != head[0] or len(template_hash) != len(zero) or template_hash == zero:
            return None
        name = path.encode("utf-8", "surrogateescape")
        data = head[2] + digest + pack(len(name) + 1) + name + b"\0"
        ctx = log_copy()
        ctx.update(data)
        computed = ctx.digest()
        if computed != template_hash:
            return None
        # An allowed digest accepts whether or not the path is also excluded, so the
        # (costlier) regex only runs for entries the digest list does not accept.
        allowed = get_allowed(path)
        if (allowed is None or digest not in allowed) and (match is None or not match(path)):
            return None
        if bank_copy is None:
            return computed
        ctx = bank_copy()
        ctx.update(data)
        return ctx.digest()

    return accept


def split_log(text: str) -> list[str]:
    """Lines of an ASCII log; the final newline is optional (as parse_ima_log)."""
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def evaluate_log(
    policy: RuntimePolicy,
    state: ImaState,
    log_text: str,
    quoted_pcr10: bytes,
    hash_alg: TpmAlg,
    *,
    log_alg: Optional[TpmAlg] = None,
    boot_aggregates: Collection[bytes] = (),
    reject_violations: bool = False,
) -> ImaVerdict:
    """:func:`~attest_protocol.policy.engine.evaluate` on the agent's log text.

    ``log_text`` holds the entries from ``state.next_entry`` on, numbered from
    ``state.next_entry + 1``.  ``log_alg`` (the template hash algorithm) defaults to the
    policy's ``ima.log_hash_alg``, as in Keylime.  A line that is not an entry raises
    :class:`~attest_protocol.ima.ImaParseError`.
    """
    if hash_alg != state.hash_alg:
        raise ValueError(f"state is for {state.hash_alg.name}, quote for {hash_alg.name}")
    log_alg = log_alg or policy.log_hash_alg
    rnd = Round(policy, state, boot_aggregates)
    hs = Hashers(hash_alg)
    lean = lean_ng(policy, rnd.digests, hs, log_alg)
    bank_copy, first = hs.bank_proto.copy, state.next_entry + 1
    lines = split_log(log_text)
    running = state.pcr10
    match = (0, running) if running == quoted_pcr10 else None
    for index, line in enumerate(lines):
        extend = lean(line)
        if extend is None:
            entry = parse_ima_line(line, first + index, log_alg=log_alg)
            extend = check_entry(rnd, hs, entry, index, reject_violations)
        ctx = bank_copy()  # PCR extend: H(PCR || digest), TPM 2.0 Part 1 §17.2
        ctx.update(running)
        ctx.update(extend)
        running = ctx.digest()
        if match is None and running == quoted_pcr10:
            match = (index + 1, running)
    return conclude(rnd, state, len(lines), match)
