"""Runtime policy loading and incremental IMA evaluation (attest_protocol.policy).

The builders at the top are shared with tests/interop/test_runtime_policy_vs_keylime.py.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime
import hashlib
import json
import struct
from collections.abc import Sequence
from typing import Any, Callable, Optional, Union

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from attest_protocol.ima import (
    ImaEntry,
    ImaParseError,
    format_ima_line,
    parse_ima_line,
    replay_pcr10,
)
from attest_protocol.policy import (
    ImaFailureReason,
    ImaState,
    RuntimePolicyError,
    RuntimePolicyFormatError,
    RuntimePolicyKeyError,
    RuntimePolicyRegexError,
    RuntimePolicyVersionError,
    evaluate,
    evaluate_log,
    keyid_v2,
    load_runtime_policy,
)
from attest_protocol.tpm2.constants import TpmAlg

PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]
BANK = TpmAlg.SHA256
# hash_algo values (include/uapi/linux/hash_info.h) for the signature header.
HASH_ALGO_SHA256 = 4

# --- builders -----------------------------------------------------------------------------


def file_digest(content: str) -> bytes:
    return hashlib.sha256(content.encode()).digest()


def make_entry(
    lineno: int,
    path: str,
    digest: bytes,
    *,
    template: str = "ima-ng",
    signature: Optional[bytes] = None,
    buffer: Optional[bytes] = None,
    pcr: int = 10,
) -> ImaEntry:
    """An entry whose SHA-1 template hash covers its data."""
    if template == "ima-sig" and signature is None:
        signature = b""
    draft = ImaEntry(lineno, pcr, bytes(20), template, "sha256", digest, path, signature, buffer)
    real = hashlib.sha1(draft.template_data()).digest()  # noqa: S324 (the kernel's choice)
    return dataclasses.replace(draft, template_hash=real)


def tamper(entry: ImaEntry) -> ImaEntry:
    """Same entry, template hash no longer matching (one bit flipped)."""
    flipped = bytes([entry.template_hash[0] ^ 1]) + entry.template_hash[1:]
    return dataclasses.replace(entry, template_hash=flipped)


def ima_signature(key: PrivateKey, digest: bytes) -> bytes:
    """signature_v2_hdr (security/integrity/integrity.h) + signature over the file digest."""
    if isinstance(key, rsa.RSAPrivateKey):
        raw = key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    else:
        raw = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    keyid = keyid_v2(key.public_key())
    return struct.pack(">BBBIH", 3, 2, HASH_ALGO_SHA256, keyid, len(raw)) + raw


def der_public(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def verification_keys(*keys: PrivateKey) -> str:
    """Keylime's tenant keyring string (file_signatures.ImaKeyring.to_string)."""
    pubkeys = [base64.b64encode(der_public(k)).decode() for k in keys]
    return json.dumps({"meta": {"version": 1}, "keyids": [], "pubkeys": pubkeys})


def policy_dict(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "meta": {"version": 1, "generator": 0},
        "release": 0,
        "digests": {},
        "excludes": [],
        "keyrings": {},
        "ima": {"ignored_keyrings": [], "log_hash_alg": "sha1", "dm_policy": None},
        "ima-buf": {},
        "verification-keys": "",
    }
    base.update(overrides)
    return base


def allow(*entries: ImaEntry) -> dict[str, list[str]]:
    table: dict[str, list[str]] = {}
    for e in entries:
        table.setdefault(e.path, []).append(e.digest.hex())
    return table


def pcr_after(entries: Sequence[ImaEntry]) -> bytes:
    """PCR 10 as the kernel extends it, whatever PCR the entries claim (a lying log)."""
    return replay_pcr10([dataclasses.replace(e, pcr=10) for e in entries], BANK)


@dataclasses.dataclass(frozen=True)
class Keys:
    rsa_key: rsa.RSAPrivateKey
    ec_key: ec.EllipticCurvePrivateKey
    other: rsa.RSAPrivateKey


_KEYS: list[Keys] = []


def sample_keys() -> Keys:
    if not _KEYS:
        _KEYS.append(
            Keys(
                rsa.generate_private_key(65537, 2048),
                ec.generate_private_key(ec.SECP256R1()),
                rsa.generate_private_key(65537, 2048),
            )
        )
    return _KEYS[0]


# --- scenarios: (name, entries, policy, expected reasons) -------------------------------------


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    entries: tuple[ImaEntry, ...]
    policy: dict[str, Any]
    reasons: tuple[ImaFailureReason, ...]
    quote: Optional[bytes] = None  # default: PCR after all entries

    def __post_init__(self) -> None:
        # Entries are reused across scenarios; number them as the log they form here.
        numbered = tuple(dataclasses.replace(e, lineno=i + 1) for i, e in enumerate(self.entries))
        object.__setattr__(self, "entries", numbered)


def _scenarios() -> list[Scenario]:
    k = sample_keys()
    R = ImaFailureReason
    boot = make_entry(1, "boot_aggregate", bytes(32))
    ls = make_entry(2, "/usr/bin/ls", file_digest("ls"))
    cat = make_entry(3, "/usr/bin/cat", file_digest("cat"))
    tmp = make_entry(3, "/tmp/x", file_digest("x"))
    good = allow(boot, ls, cat)
    wrong = make_entry(3, "/usr/bin/cat", file_digest("evil"))
    d_sig = file_digest("signed")
    rsa_sig = make_entry(
        3, "/opt/s", d_sig, template="ima-sig", signature=ima_signature(k.rsa_key, d_sig)
    )
    ec_sig = make_entry(
        3, "/opt/s", d_sig, template="ima-sig", signature=ima_signature(k.ec_key, d_sig)
    )
    bad_sig = make_entry(
        3, "/opt/s", d_sig, template="ima-sig", signature=ima_signature(k.other, d_sig)
    )
    vk = verification_keys(k.rsa_key, k.ec_key)
    kbuf = der_public(k.other)
    key_entry = make_entry(
        3, ".ima", hashlib.sha256(kbuf).digest(), template="ima-buf", buffer=kbuf
    )
    d_o = file_digest("by-other")
    by_learned = make_entry(
        4, "/opt/o", d_o, template="ima-sig", signature=ima_signature(k.other, d_o)
    )
    kr = {".ima": [key_entry.digest.hex()]}
    ign = {"ignored_keyrings": [".ima"], "log_hash_alg": "sha1", "dm_policy": None}
    edbuf = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    ed_entry = make_entry(
        3, ".ima", hashlib.sha256(edbuf).digest(), template="ima-buf", buffer=edbuf
    )
    buf = make_entry(
        3, "kexec-cmdline", hashlib.sha256(b"ro").digest(), template="ima-buf", buffer=b"ro"
    )
    return [
        Scenario("allowed", (boot, ls, cat), policy_dict(digests=good), ()),
        Scenario("not in policy", (boot, ls, tmp), policy_dict(digests=good), (R.NOT_IN_POLICY,)),
        Scenario(
            "digest mismatch", (boot, ls, wrong), policy_dict(digests=good), (R.DIGEST_MISMATCH,)
        ),
        Scenario("excluded", (boot, ls, tmp), policy_dict(digests=good, excludes=["/tmp/.*"]), ()),
        Scenario(
            "tampered",
            (boot, tamper(ls), cat),
            policy_dict(digests=good),
            (R.TEMPLATE_HASH_MISMATCH,),
        ),
        Scenario(
            "rsa sig",
            (boot, ls, rsa_sig),
            policy_dict(digests=good, **{"verification-keys": vk}),
            (),
        ),
        Scenario(
            "ec sig", (boot, ls, ec_sig), policy_dict(digests=good, **{"verification-keys": vk}), ()
        ),
        Scenario(
            "bad sig",
            (boot, ls, bad_sig),
            policy_dict(digests=good, **{"verification-keys": vk}),
            (R.BAD_SIGNATURE,),
        ),
        Scenario(
            "bad sig, digest allowed",
            (boot, bad_sig),
            policy_dict(digests=allow(boot, bad_sig)),
            (),
        ),
        Scenario(
            "unsigned ima-sig",
            (boot, make_entry(3, "/opt/s", d_sig, template="ima-sig")),
            policy_dict(digests=good),
            (R.NOT_IN_POLICY,),
        ),
        Scenario(
            "learned key",
            (boot, ls, key_entry, by_learned),
            policy_dict(digests=good, keyrings=kr),
            (),
        ),
        Scenario(
            "keyring not allowed",
            (boot, ls, key_entry, by_learned),
            policy_dict(digests=good),
            (R.NOT_IN_POLICY, R.BAD_SIGNATURE),
        ),
        Scenario(
            "ignored keyring",
            (boot, ls, key_entry, by_learned),
            policy_dict(digests=good, ima=ign),
            (R.BAD_SIGNATURE,),
        ),
        Scenario(
            "unsupported key type",
            (boot, ed_entry),
            policy_dict(digests=good, keyrings=allow(ed_entry)),
            (R.UNSUPPORTED_KEY,),
        ),
        Scenario(
            "ima-buf allowed", (boot, buf), policy_dict(digests=good, **{"ima-buf": allow(buf)}), ()
        ),
        Scenario("ima-buf not allowed", (boot, buf), policy_dict(digests=good), (R.NOT_IN_POLICY,)),
        Scenario(
            "pcr mismatch",
            (boot, ls),
            policy_dict(digests=good),
            (R.PCR_MISMATCH,),
            bytes(32)[:-1] + b"\1",
        ),
        Scenario(
            "wrong pcr",
            (boot, dataclasses.replace(ls, pcr=11)),
            policy_dict(digests=good),
            (R.WRONG_PCR,),
        ),
    ]


SCENARIOS = _scenarios()


@pytest.mark.parametrize("case", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_evaluate_scenarios(case: Scenario) -> None:
    policy = load_runtime_policy(json.dumps(case.policy).encode())
    quote = case.quote if case.quote is not None else pcr_after(case.entries)
    verdict = evaluate(policy, ImaState.initial(BANK), case.entries, quote, BANK)
    assert tuple(f.reason for f in verdict.failures) == case.reasons
    assert verdict.ok is (not case.reasons)
    assert verdict.failure_count == len(case.reasons)
    if verdict.ok:
        assert verdict.new_state.pcr10 == quote
        assert verdict.new_state.next_entry == len(case.entries)
    else:
        assert verdict.new_state == ImaState.initial(BANK)


# --- loading ----------------------------------------------------------------------------------


def _mutate(**changes: Any) -> Callable[[dict[str, Any]], Any]:
    def apply(policy: dict[str, Any]) -> Any:
        for dotted, value in changes.items():
            target = policy
            *parents, last = dotted.split("__")
            for name in parents:
                target = target[name]
            if value is _DELETE:
                del target[last]
            else:
                target[last] = value
        return policy

    return apply


_DELETE = object()
_ONE_KEY = {"keyids": [], "pubkeys": ["bm90IGEga2V5"]}

LOAD_ERRORS: list[tuple[str, Callable[[dict[str, Any]], Any], type[RuntimePolicyError], str]] = [
    ("not an object", lambda p: [p], RuntimePolicyFormatError, ""),
    ("wrong version", _mutate(meta__version=2), RuntimePolicyVersionError, "meta.version"),
    ("version as string", _mutate(meta__version="1"), RuntimePolicyFormatError, "meta.version"),
    ("missing digests", _mutate(digests=_DELETE), RuntimePolicyFormatError, "digests"),
    (
        "missing generator",
        _mutate(meta__generator=_DELETE),
        RuntimePolicyFormatError,
        "meta.generator",
    ),
    ("bad regex", _mutate(excludes=["/ok/.*", "/bad/("]), RuntimePolicyRegexError, "excludes[1]"),
    (
        "upper-case hex",
        _mutate(digests={"/a": ["AB" * 32]}),
        RuntimePolicyFormatError,
        "digests./a[0]",
    ),
    ("short hex", _mutate(digests={"/a": ["ab" * 10]}), RuntimePolicyFormatError, "digests./a[0]"),
    ("odd hex", _mutate(digests={"/a": ["a" * 63]}), RuntimePolicyFormatError, "digests./a[0]"),
    ("empty digest list", _mutate(digests={"/a": []}), RuntimePolicyFormatError, "digests./a"),
    (
        "bad keyring hex",
        _mutate(keyrings={".ima": ["zz" * 32]}),
        RuntimePolicyFormatError,
        "keyrings..ima[0]",
    ),
    (
        "log_hash_alg",
        _mutate(ima__log_hash_alg="md5"),
        RuntimePolicyFormatError,
        "ima.log_hash_alg",
    ),
    ("dm_policy", _mutate(ima__dm_policy={}), RuntimePolicyFormatError, "ima.dm_policy"),
    (
        "ignored not list",
        _mutate(ima__ignored_keyrings="*"),
        RuntimePolicyFormatError,
        "ima.ignored_keyrings",
    ),
    ("release negative", _mutate(release=-1), RuntimePolicyFormatError, "release"),
    ("release bool", _mutate(release=True), RuntimePolicyFormatError, "release"),
    (
        "vkeys not json",
        _mutate(**{"verification-keys": "{"}),
        RuntimePolicyKeyError,
        "verification-keys",
    ),
    (
        "vkeys bad key",
        _mutate(**{"verification-keys": json.dumps(_ONE_KEY)}),
        RuntimePolicyKeyError,
        "verification-keys.pubkeys[0]",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "error", "where"),
    [case[1:] for case in LOAD_ERRORS],
    ids=[case[0] for case in LOAD_ERRORS],
)
def test_load_rejects(
    mutate: Callable[[dict[str, Any]], Any], error: type[RuntimePolicyError], where: str
) -> None:
    data = json.dumps(mutate(copy.deepcopy(policy_dict()))).encode()
    with pytest.raises(error) as info:
        load_runtime_policy(data)
    assert info.value.where == where


@pytest.mark.parametrize("data", [b"{", b"\xff\xfe", b""], ids=["truncated", "not utf-8", "empty"])
def test_load_rejects_non_json(data: bytes) -> None:
    with pytest.raises(RuntimePolicyFormatError):
        load_runtime_policy(data)


def test_load_rejects_oversize(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("attest_protocol.policy.model.MAX_RUNTIME_POLICY_BYTES", 10)
    with pytest.raises(RuntimePolicyFormatError, match="larger than 10 bytes"):
        load_runtime_policy(json.dumps(policy_dict()).encode())


def test_load_good_policy() -> None:
    k = sample_keys()
    vk = verification_keys(k.rsa_key, k.ec_key)
    raw = policy_dict(
        digests={"/a": ["ab" * 32, "cd" * 20]},
        excludes=["/tmp/.*", "/var/log/.*"],
        keyrings={".ima": ["ef" * 32]},
        ima={"ignored_keyrings": ["*"], "log_hash_alg": "sha256", "dm_policy": None},
        **{"verification-keys": vk},
    )
    policy = load_runtime_policy(json.dumps(raw).encode())
    assert policy.digests["/a"] == frozenset({b"\xab" * 32, b"\xcd" * 20})
    assert policy.exclude_regex is not None
    assert policy.exclude_regex.match("/var/log/x")
    assert not policy.exclude_regex.match("/usr/var/log/x")
    assert policy.ignored_keyrings == frozenset({"*"})
    assert policy.log_hash_alg is TpmAlg.SHA256
    assert set(policy.verification_keys) == {
        keyid_v2(k.rsa_key.public_key()),
        keyid_v2(k.ec_key.public_key()),
    }


# --- incremental evaluation -------------------------------------------------------------------


def _log(count: int) -> tuple[list[ImaEntry], bytes]:
    entries = [make_entry(i + 1, f"/bin/f{i}", file_digest(str(i))) for i in range(count)]
    return entries, json.dumps(policy_dict(digests=allow(*entries))).encode()


def test_lagging_quote_accepted_then_caught_up() -> None:
    entries, raw = _log(6)
    policy = load_runtime_policy(raw)
    first = evaluate(policy, ImaState.initial(BANK), entries[:5], pcr_after(entries[:3]), BANK)
    assert first.ok
    assert (first.matched, first.new_state.next_entry, first.new_state.lag) == (3, 3, 2)
    second = evaluate(policy, first.new_state, entries[3:], pcr_after(entries), BANK)
    assert second.ok
    assert (second.new_state.next_entry, second.new_state.lag) == (6, 0)
    assert second.new_state.pcr10 == pcr_after(entries)


def test_lag_that_does_not_shrink_fails() -> None:
    entries, raw = _log(6)
    policy = load_runtime_policy(raw)
    first = evaluate(policy, ImaState.initial(BANK), entries[:5], pcr_after(entries[:3]), BANK)
    assert first.new_state.lag == 2
    # The quote moved one entry, the previous lag was two, and the log grew again.
    second = evaluate(policy, first.new_state, entries[3:], pcr_after(entries[:4]), BANK)
    assert not second.ok
    assert [f.reason for f in second.failures] == [ImaFailureReason.QUOTE_NO_PROGRESS]


def test_quote_matching_no_prefix_fails() -> None:
    entries, raw = _log(3)
    other, _ = _log(4)
    verdict = evaluate(
        load_runtime_policy(raw), ImaState.initial(BANK), entries, pcr_after(other), BANK
    )
    assert [f.reason for f in verdict.failures] == [ImaFailureReason.PCR_MISMATCH]
    assert verdict.matched is None


@pytest.mark.parametrize("cuts", [(0, 10), (1, 10), (4, 7, 10), (3, 3, 9, 10)])
def test_incremental_equals_batch(cuts: tuple[int, ...]) -> None:
    entries, raw = _log(10)
    policy = load_runtime_policy(raw)
    batch = evaluate(policy, ImaState.initial(BANK), entries, pcr_after(entries), BANK)
    state, start = ImaState.initial(BANK), 0
    for cut in cuts:
        verdict = evaluate(policy, state, entries[start:cut], pcr_after(entries[:cut]), BANK)
        assert verdict.ok
        state, start = verdict.new_state, cut
    assert state == batch.new_state


def test_learned_key_survives_rounds_and_lag() -> None:
    k = sample_keys()
    kbuf = der_public(k.other)
    key_entry = make_entry(
        1, ".ima", hashlib.sha256(kbuf).digest(), template="ima-buf", buffer=kbuf
    )
    d = file_digest("later")
    signed = make_entry(2, "/opt/l", d, template="ima-sig", signature=ima_signature(k.other, d))
    raw = policy_dict(keyrings={".ima": [key_entry.digest.hex()]})
    policy = load_runtime_policy(json.dumps(raw).encode())
    # Quote lags the key entry: it is not yet learned into the state, but is used this round.
    lagging = evaluate(policy, ImaState.initial(BANK), [key_entry, signed], bytes(32), BANK)
    assert lagging.ok and lagging.new_state.learned_keys == ()
    first = evaluate(policy, ImaState.initial(BANK), [key_entry], pcr_after([key_entry]), BANK)
    assert [lk.keyid for lk in first.new_state.learned_keys] == [keyid_v2(k.other.public_key())]
    second = evaluate(policy, first.new_state, [signed], pcr_after([key_entry, signed]), BANK)
    assert second.ok


def test_certificate_keyid_from_skid() -> None:
    k = sample_keys()
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "ima")])
    skid = b"\x01\x02\x03\x04\xde\xad\xbe\xef"
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(k.ec_key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2020, 1, 1))
        .not_valid_after(datetime.datetime(2040, 1, 1))
        .add_extension(x509.SubjectKeyIdentifier(skid), critical=False)
        .sign(k.ec_key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    entry = make_entry(1, ".ima", hashlib.sha256(der).digest(), template="ima-buf", buffer=der)
    policy = load_runtime_policy(json.dumps(policy_dict(keyrings=allow(entry))).encode())
    verdict = evaluate(policy, ImaState.initial(BANK), [entry], pcr_after([entry]), BANK)
    assert [lk.keyid for lk in verdict.new_state.learned_keys] == [0xDEADBEEF]


def test_boot_aggregate_from_measured_boot() -> None:
    boot = make_entry(1, "boot_aggregate", b"\x42" * 32)
    policy = load_runtime_policy(json.dumps(policy_dict()).encode())
    state = ImaState.initial(BANK)
    assert not evaluate(policy, state, [boot], pcr_after([boot]), BANK).ok
    verdict = evaluate(
        policy, state, [boot], pcr_after([boot]), BANK, boot_aggregates=[b"\x42" * 32]
    )
    assert verdict.ok


@pytest.mark.parametrize(("reject", "reasons"), [(False, []), (True, [ImaFailureReason.VIOLATION])])
def test_violation_entries(reject: bool, reasons: list[ImaFailureReason]) -> None:
    violation = dataclasses.replace(make_entry(1, "/var/log/x", bytes(32)), template_hash=bytes(20))
    policy = load_runtime_policy(json.dumps(policy_dict()).encode())
    quote = hashlib.sha256(bytes(32) + b"\xff" * 32).digest()  # ima_add_violation extends 0xff
    verdict = evaluate(
        policy, ImaState.initial(BANK), [violation], quote, BANK, reject_violations=reject
    )
    assert [f.reason for f in verdict.failures] == reasons


def test_state_bank_must_match_quote_bank() -> None:
    policy = load_runtime_policy(json.dumps(policy_dict()).encode())
    with pytest.raises(ValueError, match="SHA1"):
        evaluate(policy, ImaState.initial(TpmAlg.SHA1), [], bytes(32), BANK)


# --- the text path agrees with the entry path -------------------------------------------------


@pytest.mark.parametrize("case", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_evaluate_log_equals_evaluate(case: Scenario) -> None:
    policy = load_runtime_policy(json.dumps(case.policy).encode())
    quote = case.quote if case.quote is not None else pcr_after(case.entries)
    state = ImaState.initial(BANK)
    text = "".join(format_ima_line(e) + "\n" for e in case.entries)
    assert evaluate_log(policy, state, text, quote, BANK) == evaluate(
        policy, state, case.entries, quote, BANK
    )


ODD_LINES = [
    ("tab in digest", lambda line: line.replace("sha256:", "sha256:\t", 1)[:-1]),
    ("upper-case template hash", lambda line: line[:3] + line[3:43].upper() + line[43:]),
    ("NUL in path", lambda line: line + "\0"),
    ("pcr 010", lambda line: "0" + line),
    ("md5 digest", lambda line: line.replace("sha256:", "md5:", 1)),
]


@pytest.mark.parametrize("mangle", [m for _, m in ODD_LINES], ids=[n for n, _ in ODD_LINES])
def test_evaluate_log_agrees_with_parser_on_odd_lines(mangle: Callable[[str], str]) -> None:
    """The lean path must not accept a line the full path would reject or refuse to parse."""
    entries, raw = _log(1)
    line = mangle(format_ima_line(entries[0]))
    policy = load_runtime_policy(raw)
    quote, state = pcr_after(entries), ImaState.initial(BANK)
    try:
        entry = parse_ima_line(line, 1)
    except ImaParseError:
        with pytest.raises(ImaParseError):
            evaluate_log(policy, state, line, quote, BANK)
        return
    assert evaluate_log(policy, state, line, quote, BANK) == evaluate(
        policy, state, [entry], quote, BANK
    )


def test_evaluate_log_numbers_entries_from_state() -> None:
    entries, raw = _log(4)
    policy = load_runtime_policy(raw)
    first = evaluate(policy, ImaState.initial(BANK), entries[:2], pcr_after(entries[:2]), BANK)
    bad = make_entry(3, "/bin/f2", file_digest("evil"))
    text = format_ima_line(bad) + "\n"
    verdict = evaluate_log(policy, first.new_state, text, pcr_after([*entries[:2], bad]), BANK)
    assert [(f.entry, f.path, f.reason) for f in verdict.failures] == [
        (3, "/bin/f2", ImaFailureReason.DIGEST_MISMATCH)
    ]
