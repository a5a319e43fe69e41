"""The push cycle against a scripted verifier, in virtual time (pytest-trio autojump_clock).

What each answer makes the agent do is PROTOCOL.md §7 (rust-keylime state_machine.rs,
resilient_client.rs, auth.rs).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from edge_agent.ima import ImaLogReader, MeasuredBootLogReader
from edge_agent.push.collect import Collector
from edge_agent.push.loop import PushLoop, PushSettings
from edge_agent.push.session import AUTH_ATTEMPTS
from tests.agent_push.fakes import (
    AGENT_ID,
    CHALLENGE,
    QUOTE_CHALLENGE,
    TOKEN_TAIL,
    UNREACHABLE,
    FakeTpm,
    FakeVerifier,
    make_ak,
    quote_requested,
    response,
)

INTERVAL = 60.0
BACKOFF = (0.2, 0.4, 0.8)
IMA_LINES = [f"10 {'a' * 40} ima-ng sha256:{'b' * 64} /usr/bin/p{i}\n" for i in range(5)]


@pytest.fixture
def ima_log(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "ascii_runtime_measurements"
    path.write_text("".join(IMA_LINES[:3]))
    yield path
    for reader in OPENED:
        reader.sync.close()
    OPENED.clear()


OPENED: list[ImaLogReader] = []


class NoBootLog(MeasuredBootLogReader):
    """A machine without a boot log, answered without a worker thread."""

    async def read(self) -> None:
        return None


async def make_loop(
    verifier: FakeVerifier, ima_log: Path, *, with_ima: bool = True
) -> tuple[PushLoop, FakeTpm]:
    ak = make_ak()
    tpm = FakeTpm(ak)
    reader = ImaLogReader.open(ima_log) if with_ima else None
    if reader is not None:
        OPENED.append(reader)
    collector = Collector(
        tpm,
        ak,
        reader,
        NoBootLog(ima_log.parent / "no-boot-log"),
        server_identifier="ak",
        uefi_version="2.1",
        boot_time="2026-12-03T13:11:57Z",
    )
    settings = PushSettings(AGENT_ID, INTERVAL, BACKOFF)
    return PushLoop(verifier, tpm, collector, settings), tpm


def routes(verifier: FakeVerifier) -> list[str]:
    return [f"{s.method} {s.path}" for s in verifier.seen]


async def test_one_attestation_is_session_post_patch(ima_log: Path) -> None:
    verifier = FakeVerifier(next_seconds=7)
    loop, tpm = await make_loop(verifier, ima_log)
    assert await loop.cycle() == 7.0
    assert routes(verifier) == [
        "POST /v3.0/sessions",
        "PATCH /v3.0/sessions/s1",
        f"POST /v3.0/agents/{AGENT_ID}/attestations",
        f"PATCH /v3.0/agents/{AGENT_ID}/attestations/0",
    ]
    # The proof is TPM2_Certify over the raw session challenge.
    assert tpm.certified == [CHALLENGE]
    proof = verifier.seen[1].doc["data"]["attributes"]["authentication_provided"][0]["data"]
    assert base64.b64decode(proof["message"]) == b"attest:" + CHALLENGE
    # Session calls carry no token; attestation calls carry the session's.
    token = f"s1.{TOKEN_TAIL}"
    assert [s.token for s in verifier.seen] == [None, None, token, token]
    assert verifier.seen[2].accept == "application/vnd.api+json"
    # Evidence: exactly what was requested, in order.
    items = verifier.seen[3].doc["data"]["attributes"]["evidence_collected"]
    assert [i["evidence_type"] for i in items] == ["tpm_quote", "ima_log"]
    assert tpm.quotes == [(QUOTE_CHALLENGE, 1 << 10 | 1 << 23, "sha256")]
    assert items[1]["data"] == {"entries": "".join(IMA_LINES[:3]), "entry_count": 3}
    assert loop.attestations == 1


async def test_ima_entries_from_the_requested_offset(ima_log: Path) -> None:
    verifier = FakeVerifier()
    loop, _tpm = await make_loop(verifier, ima_log)
    await loop.cycle()
    with ima_log.open("a") as log:
        log.write("".join(IMA_LINES[3:]))
    verifier.requested[1]["chosen_parameters"]["starting_offset"] = 3
    await loop.cycle()
    offer = verifier.seen[-2].doc["data"]["attributes"]["evidence_supported"]
    assert offer[-1]["capabilities"]["entry_count"] == 5
    items = verifier.seen[-1].doc["data"]["attributes"]["evidence_collected"]
    assert items[1]["data"] == {"entries": "".join(IMA_LINES[3:]), "entry_count": 2}
    # The token is kept between attestations: one session only.
    assert verifier.sessions == 1


async def test_401_opens_a_new_session_in_the_same_cycle(ima_log: Path) -> None:
    verifier = FakeVerifier(next_seconds=3)
    loop, _tpm = await make_loop(verifier, ima_log)
    await loop.cycle()
    verifier.queue("negotiate", response(401, {"errors": "token expired"}))
    assert await loop.cycle() == 3.0
    assert verifier.sessions == 2 and loop.sessions == 2
    assert verifier.seen[-1].token == f"s2.{TOKEN_TAIL}"


async def test_403_twice_gives_up_for_an_interval(ima_log: Path) -> None:
    verifier = FakeVerifier()
    loop, _tpm = await make_loop(verifier, ima_log)
    verifier.queue("evidence", response(403), response(403))
    assert await loop.cycle() == INTERVAL
    assert verifier.sessions == 2
    # The token was dropped: the next cycle authenticates first.
    await loop.cycle()
    assert verifier.sessions == 3


async def test_retry_after_is_obeyed(ima_log: Path) -> None:
    verifier = FakeVerifier()
    loop, _tpm = await make_loop(verifier, ima_log)
    verifier.queue("negotiate", response(429, {"errors": "premature"}, retry_after="5"))
    assert await loop.cycle() == 5.0
    verifier.queue("negotiate", response(503, retry_after="100000"))
    assert await loop.cycle() == 300.0  # bounded


async def test_unreachable_verifier_backs_off_boundedly_then_resets(
    ima_log: Path, autojump_clock: trio.abc.Clock
) -> None:
    verifier = FakeVerifier(next_seconds=2)
    loop, _tpm = await make_loop(verifier, ima_log)
    # Each cycle's authentication tries AUTH_ATTEMPTS times before the cycle gives up.
    verifier.queue("sessions", *[UNREACHABLE] * (4 * AUTH_ATTEMPTS))
    assert [await loop.cycle() for _ in range(4)] == [0.2, 0.4, 0.8, 0.8]
    assert await loop.cycle() == 2.0
    verifier.queue("negotiate", UNREACHABLE)
    assert await loop.cycle() == 0.2


async def test_failed_proof_is_retried_three_times_a_second_apart(
    ima_log: Path, autojump_clock: trio.abc.Clock
) -> None:
    verifier = FakeVerifier()
    loop, _tpm = await make_loop(verifier, ima_log)
    fail = response(200, {"data": {"type": "session", "attributes": {"evaluation": "fail"}}})
    verifier.queue("proof", *[fail] * AUTH_ATTEMPTS)
    start = trio.current_time()
    assert await loop.cycle() == INTERVAL
    posts = [s.at - start for s in verifier.seen if s.path == "/v3.0/sessions"]
    assert posts == pytest.approx([0.0, 1.0, 2.0])
    assert loop.attestations == 0


async def test_run_follows_seconds_to_next_attestation(
    ima_log: Path, autojump_clock: trio.abc.Clock
) -> None:
    # No IMA log here: its reads run in a worker thread, and autojump_clock would jump the
    # virtual clock while one is running.
    verifier = FakeVerifier(next_seconds=4, requested=[quote_requested([10])])
    loop, _tpm = await make_loop(verifier, ima_log, with_ima=False)
    with trio.move_on_after(4 * 4 + 1):
        await loop.run()
    negotiations = [s.at for s in verifier.seen if s.method == "POST" and "attest" in s.path]
    gaps = [b - a for a, b in zip(negotiations, negotiations[1:])]
    assert len(negotiations) == 5, verifier.seen
    assert gaps == pytest.approx([4.0] * 4)


async def test_a_location_elsewhere_is_not_followed(ima_log: Path) -> None:
    verifier = FakeVerifier()
    loop, _tpm = await make_loop(verifier, ima_log)
    body = {"data": {"type": "attestation", "attributes": {"evidence_requested": []}}}
    for location in ("/v3.0/agents/other/attestations/0", "https://evil/x", ""):
        verifier.queue("negotiate", response(201, body, location=location))
        assert await loop.cycle() == INTERVAL
    assert not any(s.method == "PATCH" and "attestations" in s.path for s in verifier.seen)


async def test_nothing_requested_sends_the_error_document(ima_log: Path) -> None:
    verifier = FakeVerifier(requested=[])
    loop, _tpm = await make_loop(verifier, ima_log)
    assert await loop.cycle() == INTERVAL
    assert verifier.seen[-1].doc == {
        "data": {"type": "error", "attributes": {"evidence_collected": []}}
    }
    assert loop.attestations == 0


async def test_a_scheme_the_ak_cannot_sign_is_refused(ima_log: Path) -> None:
    verifier = FakeVerifier()
    verifier.requested[0]["chosen_parameters"]["signature_scheme"] = "rsapss"
    loop, tpm = await make_loop(verifier, ima_log)
    assert await loop.cycle() == INTERVAL
    assert tpm.quotes == []
    assert verifier.seen[-1].doc["data"]["type"] == "error"
