"""limelet-agent in push mode under the real Keylime 7.14.3 verifier (``mode = push``).

The agent runs as its own process (``python -m edge_agent.cli``, ``push_model = true``) on
swtpm behind tpm2-abrmd, sharing the TPM with :class:`tools.ima_emulator.ImaEmulator`, as a
kernel's IMA and the agent share /dev/tpmrm0.  The real registrar registers it; the real
``keylime_tenant -c add --push-model`` enrols it with a tpm_policy (PCR 23 all zeros) and a
runtime policy (PROTOCOL.md §2).  Then, with the verifier's state read over its v2.6 admin
API (what the tenant uses; Keylime's v3 reads answer 500, PROTOCOL.md §9.8):

1. attestations pass while IMA entries keep arriving;
2. the agent process has no listening or bound socket at all (/proc/<pid>/fd against
   /proc/<pid>/net/{tcp,tcp6,udp,udp6});
3. PCR 23 extended: the agent turns FAIL, with at most one more passed attestation (the
   one that may have been in flight): the first quote after the tamper fails;
4. a failed attestation does not extend the token (session_lifetime here 12 s), so the
   verifier answers 401 and the agent opens a new session and goes on attesting.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from attest_protocol.ima import ImaEntry
from attest_protocol.tpm2.constants import TpmAlg
from edge_agent.tpm import esys_ops
from tests.fixtures.runtime_policy import allowing
from tools.ima_emulator import ImaEmulator
from tools.keylime_services import KeylimeServices, get_json, start_keylime
from tools.swtpm import Swtpm
from tools.tpm_broker import BUS_ENV, TpmBroker

pytestmark = [pytest.mark.interop, pytest.mark.swtpm]

AGENT_ID = "limelet-push-under-keylime"
LOOPBACK = "127.0.0.1"
QUOTE_INTERVAL_SECONDS = 2
SESSION_LIFETIME_SECONDS = 12
TAMPER_PCR = 23
ALLOWED = {f"/usr/bin/limelet-push-{i}": f"pushed program {i}\n".encode() for i in range(4)}
MEASURE_EVERY_SECONDS = 0.5
# Conditions polled with generous deadlines: a loaded 2-core machine only makes them slower.
REGISTERED_WITHIN_S = 90.0
PASS_WITHIN_S = 90.0
FAIL_WITHIN_S = 60.0
NEW_SESSION_WITHIN_S = SESSION_LIFETIME_SECONDS + 60.0
POLL_S = 0.5
PASSES_WANTED = 4
STOP_TIMEOUT_S = 20.0
LOG_TAIL = 8000
LISTEN_STATE = "0A"  # TCP_LISTEN in /proc/net/tcp (include/net/tcp_states.h)


@pytest.fixture
def keylime(tmp_path: Path) -> Iterator[KeylimeServices]:
    overrides = {"verifier": {"session_lifetime": str(SESSION_LIFETIME_SECONDS)}}
    with start_keylime(
        tmp_path / "keylime",
        mode="push",
        quote_interval_seconds=QUOTE_INTERVAL_SECONDS,
        overrides=overrides,
    ) as services:
        yield services


@pytest.fixture
def broker(swtpm: Swtpm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TpmBroker]:
    with TpmBroker(swtpm.tcti, tmp_path / "broker") as running:
        # The tabrmd TCTI loaded in this process (the emulator, the tamper) finds the bus here.
        monkeypatch.setenv(BUS_ENV, running.bus_address)
        yield running


def runtime_policy(boot_aggregate: ImaEntry | None) -> dict[str, Any]:
    """A Keylime runtime policy allowing only ALLOWED files and the boot_aggregate."""
    assert boot_aggregate is not None
    # generator > 1, or the push verifier does not request the IMA log (PROTOCOL.md §9.3).
    return allowing(ALLOWED, boot_aggregate, generator=3)


def agent_conf(tmp_path: Path, keylime: KeylimeServices, tcti: str, ima_log: Path) -> Path:
    conf = tmp_path / "agent.conf"
    conf.write_text(
        "[agent]\n"
        f'uuid = "{AGENT_ID}"\n'
        f'keylime_dir = "{tmp_path / "agent"}"\n'
        f'registrar_ip = "{keylime.registrar_ip}"\n'
        f"registrar_port = {keylime.registrar_port}\n"
        f'tcti = "{tcti}"\n'
        'run_as = ""\n'
        'payload_script = ""\n'
        "push_model = true\n"
        f'verifier_url = "{keylime.verifier_url}"\n'
        f'verifier_tls_ca_cert = "{keylime.ca_cert}"\n'
        f"attestation_interval_seconds = {QUOTE_INTERVAL_SECONDS}\n"
        f'ima_ml_path = "{ima_log}"\n'
        f'measuredboot_ml_path = "{tmp_path / "no-boot-log"}"\n'
        "exponential_backoff_initial_delay = 200\n"
        "exponential_backoff_max_delay = 2000\n"
    )
    return conf


def verifier_record(keylime: KeylimeServices) -> dict[str, Any]:
    status, body = get_json(
        keylime.verifier_ip,
        keylime.verifier_port,
        f"/v2.6/agents/{AGENT_ID}",
        keylime.ssl_context(),
    )
    assert status == 200, body
    record: dict[str, Any] = body["results"]
    return record


def tails(keylime: KeylimeServices, agent_log: Path) -> str:
    verifier = keylime.verifier_log.read_text(errors="replace")[-LOG_TAIL:]
    agent = agent_log.read_text(errors="replace")[-LOG_TAIL:]
    return f"\n--- agent log ---\n{agent}\n--- verifier log ---\n{verifier}"


async def wait_for(condition: Any, within: float, what: str, logs: Any) -> float:
    """Poll ``condition()`` (run in a thread) until true; the seconds it took."""
    start = time.monotonic()
    while not await trio.to_thread.run_sync(condition):
        assert time.monotonic() - start < within, f"not within {within} s: {what}" + logs()
        await trio.sleep(POLL_S)
    return time.monotonic() - start


def socket_inodes(pid: int) -> set[str]:
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            found.add(target[len("socket:[") : -1])
    return found


def bound_ports(pid: int) -> list[str]:
    """The process's TCP sockets in LISTEN and its UDP sockets, as "proto local-address"."""
    mine = socket_inodes(pid)
    bound = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        with open(f"/proc/{pid}/net/{proto}") as table:
            next(table)
            for line in table:
                cols = line.split()
                local, state, inode = cols[1], cols[3], cols[9]
                if inode in mine and (proto.startswith("udp") or state == LISTEN_STATE):
                    bound.append(f"{proto} {local}")
    return bound


async def feed(emulator: ImaEmulator) -> None:
    paths = list(ALLOWED)
    while True:
        path = paths[emulator.count % len(paths)]
        await trio.to_thread.run_sync(emulator.measure, path, ALLOWED[path])
        await trio.sleep(MEASURE_EVERY_SECONDS)


def extend_pcr(tcti: str, pcr: int, data: bytes) -> None:
    esys, _vendor = esys_ops.open_esapi(tcti)
    try:
        digest = hashlib.sha256(data).digest()
        esys_ops.pcr_extend(esys, pcr, TpmAlg.SHA256, digest)
    finally:
        esys.close()


async def test_push_agent_attested_by_real_keylime(
    keylime: KeylimeServices, broker: TpmBroker, tmp_path: Path
) -> None:
    ima_log = tmp_path / "ima" / "ascii_runtime_measurements"
    ima_log.parent.mkdir()
    ima_log.write_bytes(b"")
    emulator = ImaEmulator(broker.tcti, ima_log)
    policy = tmp_path / "runtime-policy.json"
    policy.write_text(json.dumps(runtime_policy(emulator.boot_aggregate())))
    conf = agent_conf(tmp_path, keylime, broker.tcti, ima_log)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYLIME_") and k != "TCTI"}
    env.update(broker.env, KEYLIME_AGENT_CONFIG=str(conf))
    agent_log = tmp_path / "agent.log"

    def logs() -> str:
        return tails(keylime, agent_log)

    with agent_log.open("wb") as out:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "edge_agent.cli"], env=env, stdout=out, stderr=out
        )
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(feed, emulator)
                await attest_tamper_renew(keylime, broker, process, agent_log, policy, logs)
                nursery.cancel_scope.cancel()
        finally:
            emulator.close()
            if process.returncode is None:
                process.terminate()
                with trio.move_on_after(STOP_TIMEOUT_S):
                    await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 0, logs()
    assert "Traceback" not in agent_log.read_text(), logs()


async def attest_tamper_renew(
    keylime: KeylimeServices,
    broker: TpmBroker,
    process: trio.Process,
    agent_log: Path,
    policy: Path,
    logs: Any,
) -> None:
    def text() -> str:
        return agent_log.read_text(errors="replace")

    await wait_for(lambda: "push mode" in text(), REGISTERED_WITHIN_S, "agent up", logs)
    add = await trio.to_thread.run_sync(
        lambda: keylime.run_tenant(
            "-c", "add", "-u", AGENT_ID, "--push-model",
            "--tpm_policy", json.dumps({str(TAMPER_PCR): ["0" * 64]}),
            "--runtime-policy", str(policy),
        )
    )  # fmt: skip
    assert add.returncode == 0, add.stdout + add.stderr + logs()

    # 1. Passes while the IMA log grows.
    def passed_enough() -> bool:
        record = verifier_record(keylime)
        assert record["attestation_status"] in ("PENDING", "PASS"), (record, logs())
        return bool(record["attestation_count"] >= PASSES_WANTED)

    took = await wait_for(passed_enough, PASS_WITHIN_S, "attestations pass", logs)
    record = verifier_record(keylime)
    print(f"{record['attestation_count']} passes after {took:.1f} s, status {record}")
    assert record["attestation_status"] == "PASS", record
    # The verifier asked for the IMA log from where the last passed attestation ended.
    offsets = [int(m) for m in re.findall(r"IMA entries from (\d+)", text())]
    assert offsets and offsets[0] == 0, logs()
    assert any(b > a for a, b in zip(offsets, offsets[1:])), offsets

    # 2. No port of its own, ever.
    assert process.returncode is None, logs()
    assert bound_ports(process.pid) == [], logs()

    # 3. PCR tamper: FAIL, the first quote after it failing.
    before = int(verifier_record(keylime)["attestation_count"])
    await trio.to_thread.run_sync(extend_pcr, broker.tcti, TAMPER_PCR, b"tampered")
    tampered_at = time.monotonic()
    await wait_for(
        lambda: verifier_record(keylime)["attestation_status"] == "FAIL",
        FAIL_WITHIN_S,
        "FAIL after the PCR tamper",
        logs,
    )
    after = verifier_record(keylime)
    print(f"FAIL {time.monotonic() - tampered_at:.1f} s after the tamper: {after}")
    assert int(after["attestation_count"]) <= before + 1, (before, after)

    # 4. The token is not extended after a failure: it expires, a 401 and a new session.
    sessions = text().count("Authenticated to the verifier")
    await wait_for(
        lambda: (
            text().count("Authenticated to the verifier") > sessions
            and "refused the token (401)" in text()
        ),
        NEW_SESSION_WITHIN_S,
        "a new session after the token expired",
        logs,
    )
    assert bound_ports(process.pid) == [], logs()
