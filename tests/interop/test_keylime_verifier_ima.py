"""The real Keylime 7.14.3 verifier checks our agent's IMA log against a runtime policy.

Our agent runs in-process on swtpm with ``ima_ml_path`` pointing at a log that
:class:`tools.ima_emulator.ImaEmulator` writes (a line, then PCR 10 extended in every bank).
swtpm serves one connection at a time, so both reach it through ``tpm2-abrmd``
(:class:`tools.tpm_broker.TpmBroker`), as a kernel's agent and IMA share /dev/tpmrm0.

1. ``keylime_tenant -c add --runtime-policy`` with a policy allowing boot_aggregate and a few
   files; the emulator keeps measuring those files while the verifier polls (1 s interval);
   the agent stays in "Get Quote" for at least 30 s and its attestation count grows.
2. One file that the policy does not list: the verifier fails the agent and its log names
   that file ("File not found in allowlist", keylime/ima/ima.py).
3. "Reboot": the agent stops, the TPM is shut down orderly (TPM2_Shutdown(CLEAR)) and swtpm
   restarts on the same state, which resets PCR 10 (TPM2_Startup(CLEAR)); the log is
   truncated to a fresh boot_aggregate.  Keylime's default severity policy makes every event
   "emergency", which stops polling for good (cloud_verifier_tornado.py, process_agent), so
   the documented way back is ``keylime_tenant -c reactivate``.  The agent, restarted with the
   same AK (edge_agent.tpm.ak_store), answers the verifier's ``ima_ml_entry`` beyond the new
   log with the whole log from entry 0, the verifier resets its IMA state
   (cloud_verifier_common.py, ``ima_measurement_list_entry == 0``) and attestation recovers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from tpm2_pytss import TPM2_SU

from attest_protocol.ima import ImaEntry
from edge_agent.app import AgentStarted, run_agent
from edge_agent.config import AgentConfig
from edge_agent.tpm import esys_ops
from tests.fixtures.runtime_policy import allowing
from tests.interop.agent_support import agent_config as interop_agent_config
from tests.interop.agent_support import first_get_quote
from tests.interop.test_keylime_verifier_attests_agent import verifier_log
from tools.ima_emulator import ImaEmulator
from tools.keylime_services import KeylimeServices, get_json, start_keylime
from tools.swtpm import Swtpm
from tools.tpm_broker import BUS_ENV, TpmBroker

pytestmark = [pytest.mark.interop, pytest.mark.swtpm]

AGENT_ID = "limelet-ima-attested-by-keylime"
LOOPBACK = "127.0.0.1"
QUOTE_INTERVAL_SECONDS = 1
# The acceptance: attested for at least this long while the log keeps growing.
ATTESTED_SECONDS = 30.0
STATUS_EVERY_SECONDS = 5.0
# The emulator adds an allowed entry this often (several per quote interval).
MEASURE_EVERY_SECONDS = 0.3
# Files the policy allows, measured round-robin, and the one it does not know.
ALLOWED = {f"/usr/bin/limelet-allowed-{i}": f"allowed program {i}\n".encode() for i in range(5)}
FORBIDDEN_PATH = "/usr/bin/limelet-not-in-policy"
FORBIDDEN_CONTENT = b"a program nobody allowed\n"
# Keylime's states as cvstatus prints them and as its REST API numbers them
# (keylime/common/states.py).
GET_QUOTE = "Get Quote"
GET_QUOTE_CODE, FAILED_CODE, INVALID_QUOTE_CODE = 3, 7, 9
# Detection and recovery each take a quote or two; generous bounds for a 2-core runner.
DETECT_WITHIN_SECONDS = 10.0
RECOVER_WITHIN_SECONDS = 20.0
RECOVERED_SAMPLES = 3
# After the reboot, how long to watch that the verifier does not resume by itself.
NO_RESUME_WAIT_SECONDS = 3 * QUOTE_INTERVAL_SECONDS
STATE_POLL_SECONDS = 0.2
NOT_IN_POLICY_LOG = "File not found in allowlist: "
NOT_IN_POLICY_EVENT = "not_in_allowlist"


@pytest.fixture
def keylime(tmp_path: Path) -> Iterator[KeylimeServices]:
    with start_keylime(tmp_path / "keylime", quote_interval_seconds=QUOTE_INTERVAL_SECONDS) as svc:
        yield svc


def runtime_policy(boot_aggregate: ImaEntry | None) -> dict[str, Any]:
    """A Keylime runtime policy allowing only ALLOWED files and the boot_aggregate."""
    assert boot_aggregate is not None
    return allowing(ALLOWED, boot_aggregate)


def agent_config(tmp_path: Path, tcti: str, keylime: KeylimeServices, ima_log: Path) -> AgentConfig:
    return interop_agent_config(
        tmp_path,
        tcti,
        keylime,
        AGENT_ID,
        ima_ml_path=str(ima_log),
        extract_payload_zip=False,
        payload_script="",
    )


class Machine:
    """The attested "machine": swtpm behind abrmd, and the IMA log an emulator writes."""

    def __init__(self, swtpm: Swtpm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.swtpm = swtpm
        self.tmp_path = tmp_path
        self.monkeypatch = monkeypatch
        self.ima_log = tmp_path / "ima" / "ascii_runtime_measurements"
        self.boots = 0
        self.boot_aggregate: ImaEntry | None = None
        self.broker: TpmBroker | None = None
        self.emulator: ImaEmulator | None = None

    def boot(self) -> ImaEmulator:
        """Start the broker, empty the IMA log, log boot_aggregate; return the emulator."""
        self.boots += 1
        broker = TpmBroker(self.swtpm.tcti, self.tmp_path / f"broker-{self.boots}").start()
        self.broker = broker
        # The tabrmd TCTI, loaded in this process by the agent and the emulator, finds the
        # private bus in the environment.
        self.monkeypatch.setenv(BUS_ENV, broker.bus_address)
        self.ima_log.parent.mkdir(exist_ok=True)
        self.ima_log.write_bytes(b"")
        self.emulator = ImaEmulator(broker.tcti, self.ima_log)
        self.boot_aggregate = self.emulator.boot_aggregate()
        return self.emulator

    @property
    def tcti(self) -> str:
        assert self.broker is not None
        return self.broker.tcti

    def reboot(self) -> ImaEmulator:
        """Power-cycle: orderly TPM shutdown, swtpm restarts on the same state (PCR 10 = 0)."""
        self._release()
        shutdown_tpm(self.swtpm.tcti)
        self.swtpm.stop()
        self.swtpm = Swtpm(self.swtpm.state, self.tmp_path / "swtpm-rebooted", copy=False)
        self.swtpm.start()
        return self.boot()

    def _release(self) -> None:
        emulator, self.emulator = self.emulator, None
        broker, self.broker = self.broker, None
        try:
            if emulator is not None:
                emulator.close()
        finally:
            if broker is not None:
                broker.stop()

    def close(self) -> None:
        try:
            self._release()
        finally:
            self.swtpm.stop()


@pytest.fixture
def machine(swtpm: Swtpm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Machine]:
    monkeypatch.delenv("TCTI", raising=False)
    running = Machine(swtpm, tmp_path, monkeypatch)
    try:
        yield running
    finally:
        running.close()


def shutdown_tpm(tcti: str) -> None:
    """TPM2_Shutdown(CLEAR), as an OS does before a reboot, so the TPM clock stays "safe"."""
    esys, _vendor = esys_ops.open_esapi(tcti)
    try:
        with esys_ops.tss("shutting the TPM down"):
            esys.shutdown(TPM2_SU.CLEAR)
    finally:
        esys.close()


async def feed_allowed(emulator: ImaEmulator) -> None:
    """Measure the allowed files round-robin, forever (until cancelled)."""
    paths = list(ALLOWED)
    while True:
        path = paths[emulator.count % len(paths)]
        await trio.to_thread.run_sync(emulator.measure, path, ALLOWED[path])
        await trio.sleep(MEASURE_EVERY_SECONDS)


async def tenant(keylime: KeylimeServices, *args: str) -> str:
    done = await trio.to_thread.run_sync(lambda: keylime.run_tenant(*args))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output + verifier_log(keylime)
    return output


async def cvstatus(keylime: KeylimeServices) -> dict[str, Any]:
    """``keylime_tenant -c cvstatus``: the agent's record as the tenant prints it."""
    output = await tenant(keylime, "-c", "cvstatus", "-u", AGENT_ID)
    line = output[output.index("Agent Info from") :].splitlines()[1]
    record: dict[str, Any] = json.loads(line)[AGENT_ID]
    return record


async def attested_for(keylime: KeylimeServices, seconds: float) -> list[tuple[float, int]]:
    """Sample (elapsed s, attestation_count) while asserting "Get Quote" throughout."""
    start = time.monotonic()
    first = await first_get_quote(lambda: cvstatus(keylime))
    counts = [(0.0, int(first["attestation_count"]))]
    while time.monotonic() - start < seconds:
        await trio.sleep(STATUS_EVERY_SECONDS)
        record = await cvstatus(keylime)
        assert record["operational_state"] == GET_QUOTE, (record, verifier_log(keylime))
        counts.append((round(time.monotonic() - start, 1), int(record["attestation_count"])))
    return counts


async def verifier_state(keylime: KeylimeServices) -> int:
    """operational_state from ``GET /v{current}/agents/{id}`` on the verifier (mTLS)."""

    def get(path: str) -> Any:
        tls = keylime.ssl_context()
        status, body = get_json(keylime.verifier_ip, keylime.verifier_port, path, tls)
        assert status == 200, body
        return body["results"]

    version = (await trio.to_thread.run_sync(get, "/version"))["current_version"]
    record = await trio.to_thread.run_sync(get, f"/v{version}/agents/{AGENT_ID}")
    state: int = record["operational_state"]
    return state


async def wait_state(keylime: KeylimeServices, wanted: set[int], within: float) -> int:
    """Poll the verifier's REST API until the agent's state is one of ``wanted``."""
    deadline = time.monotonic() + within
    state = await verifier_state(keylime)
    while state not in wanted and time.monotonic() < deadline:
        await trio.sleep(STATE_POLL_SECONDS)
        state = await verifier_state(keylime)
    return state


async def test_keylime_verifier_checks_ima_log(
    machine: Machine, keylime: KeylimeServices, tmp_path: Path
) -> None:
    emulator = machine.boot()
    policy_file = tmp_path / "runtime-policy.json"
    policy_file.write_text(json.dumps(runtime_policy(machine.boot_aggregate)))
    config = agent_config(tmp_path, machine.tcti, keylime, machine.ima_log)
    add = ("-c", "add", "-t", LOOPBACK, "-tp", str(config.port), "-u", AGENT_ID)

    async with trio.open_nursery() as nursery:
        agent = await start_agent(nursery, config)
        feeder = start_feeder(nursery, emulator)
        await tenant(keylime, *add, "--runtime-policy", str(policy_file))
        counts = await attested_for(keylime, ATTESTED_SECONDS)
        print(f"attestation_count over time (s, count): {counts}; IMA entries {emulator.count}")
        assert counts[-1][1] - counts[0][1] >= ATTESTED_SECONDS / 2, counts
        assert emulator.count >= ATTESTED_SECONDS / MEASURE_EVERY_SECONDS / 2

        await feeder.stop()
        await measure_forbidden(keylime, emulator)
        await agent.stop()
        await reboot_and_recover(nursery, keylime, machine, config)
        nursery.cancel_scope.cancel()


async def measure_forbidden(keylime: KeylimeServices, emulator: ImaEmulator) -> None:
    """One entry the policy does not allow: the verifier fails the agent, naming the file."""
    await trio.to_thread.run_sync(emulator.measure, FORBIDDEN_PATH, FORBIDDEN_CONTENT)
    measured_at = time.monotonic()
    state = await wait_state(keylime, {FAILED_CODE, INVALID_QUOTE_CODE}, DETECT_WITHIN_SECONDS)
    print(f"verifier state {state} {time.monotonic() - measured_at:.1f} s after the entry")
    assert state in (FAILED_CODE, INVALID_QUOTE_CODE), verifier_log(keylime)
    record = await cvstatus(keylime)
    print(f"cvstatus after the entry: {record['operational_state']}, {record['last_event_id']}")
    assert str(record["last_event_id"]).endswith(NOT_IN_POLICY_EVENT), record
    assert NOT_IN_POLICY_LOG + FORBIDDEN_PATH in full_log(keylime)


async def reboot_and_recover(
    nursery: trio.Nursery, keylime: KeylimeServices, machine: Machine, config: AgentConfig
) -> None:
    """Reboot, restart the agent; Keylime resumes only after ``reactivate``, from entry 0."""
    emulator = await trio.to_thread.run_sync(machine.reboot)
    assert machine.ima_log.read_text().count("\n") == 1  # boot_aggregate only
    log_before = len(full_log(keylime))
    await start_agent(nursery, config)
    start_feeder(nursery, emulator)
    # Polling stopped at the failure (every event is "emergency" by default): no quote yet.
    await trio.sleep(NO_RESUME_WAIT_SECONDS)
    assert await verifier_state(keylime) in (FAILED_CODE, INVALID_QUOTE_CODE)

    await tenant(keylime, "-c", "reactivate", "-u", AGENT_ID)
    state = await wait_state(keylime, {GET_QUOTE_CODE}, RECOVER_WITHIN_SECONDS)
    assert state == GET_QUOTE_CODE, verifier_log(keylime)
    after = await attested_for(keylime, RECOVERED_SAMPLES * STATUS_EVERY_SECONDS)
    print(f"after the reboot (s, count): {after}; IMA entries {emulator.count}")
    assert after[-1][1] > after[0][1], after
    # The agent answered the verifier's ima_ml_entry (beyond the new log) from entry 0, which
    # Keylime accepts as a reset; any other start would be "invalid_ima_entry_nb".
    assert "invalid_ima_entry_nb" not in full_log(keylime)[log_before:]


def full_log(keylime: KeylimeServices) -> str:
    return keylime.verifier_log.read_text(errors="replace")


class Task:
    """A background task in the test's nursery that can be stopped and waited for."""

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.done = trio.Event()

    async def stop(self) -> None:
        self.scope.cancel()
        await self.done.wait()


async def start_agent(nursery: trio.Nursery, config: AgentConfig) -> Task:
    """Run the agent until stopped (for the reboot), returning once it serves."""
    task = Task()

    async def run(task_status: trio.TaskStatus[AgentStarted]) -> None:
        try:
            with task.scope:
                await run_agent(config, task_status=task_status)
        finally:
            task.done.set()

    started: AgentStarted = await nursery.start(run)
    assert started.agent_id == AGENT_ID
    return task


def start_feeder(nursery: trio.Nursery, emulator: ImaEmulator) -> Task:
    task = Task()

    async def run() -> None:
        try:
            with task.scope:
                await feed_allowed(emulator)
        finally:
            task.done.set()

    nursery.start_soon(run)
    return task
