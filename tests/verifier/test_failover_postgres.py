"""Three limelet-verifier processes share a fleet on one real PostgreSQL database.

The fleet: one honest fake agent (tests/verifier/fake_agent.py, quotes from swtpm) served on
a dozen loopback ports, each port enrolled as its own agent, plus one agent whose tpm_policy
cannot hold (a failure verdict to keep).  A watch in front of the agents counts quote
requests in flight per agent and records every overlap: one verifier never sends two at once
to one agent, so an overlap means two verifiers polled it.  Each quote is held back a little,
which widens the window in which double polling would show.

kill -9 of the verifier with the most agents → all of its agents attested again by the two
others (the wait is the lease bound plus slack for a loaded machine); the failure recorded
before the kill is still there; no overlap; the killed verifier, restarted, gets a share back.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Set
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import trio

from edge_agent.tpm.pytss_backend import PytssTpm
from service_kit.listen import bind, mtls_config, serve_app
from tests.cv_ca import TlsFiles
from tests.swtpm.support import config as tpm_config
from tests.verifier.fake_agent import FakeAgent
from tests.verifier.support import API, LOOPBACK, add_body
from tools.swtpm import Swtpm
from verifier_lite.leases import LeaseTimes, fair_share
from verifier_lite.states import State

pytestmark = pytest.mark.swtpm

AGENTS = 12
BAD = "bad-agent"  # its tpm_policy wants a PCR 23 value swtpm never has
BAD_POLICY = '{"mask": "0x810000", "23": ["' + "ff" * 32 + '"]}'
QUOTE_HOLD_SECONDS = 0.2  # each quote answer is held back this long (see the docstring)
TIMES = LeaseTimes(duration=6.0, renew=1.0, margin=2.0)
SLACK_SECONDS = 90.0  # for a machine shared by many test runs; the bound itself is 7 s
POLL_SECONDS = 0.3
VERIFIERS = ("verifier-1", "verifier-2", "verifier-3")


@dataclass
class QuoteWatch:
    """Quote requests in flight per agent port, and every overlap seen."""

    in_flight: dict[int, int] = field(default_factory=dict)
    overlaps: list[tuple[int, int]] = field(default_factory=list)
    quotes: dict[int, int] = field(default_factory=dict)

    def wrap(self, app: Any) -> Callable[..., Awaitable[None]]:
        async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http" or not scope["path"].endswith("/quotes/integrity"):
                await app(scope, receive, send)
                return
            port = int(scope["server"][1])
            now = self.in_flight.get(port, 0) + 1
            self.in_flight[port] = now
            self.quotes[port] = self.quotes.get(port, 0) + 1
            if now > 1:
                self.overlaps.append((port, now))
            try:
                await trio.sleep(QUOTE_HOLD_SECONDS)
                await app(scope, receive, send)
            finally:
                self.in_flight[port] -= 1

        return asgi


@asynccontextmanager
async def fleet(
    nursery: trio.Nursery, swtpm: Swtpm, tls: TlsFiles, workdir: Path, watch: QuoteWatch
) -> AsyncIterator[tuple[FakeAgent, list[int]]]:
    tpm = await PytssTpm.open(tpm_config(swtpm.tcti, workdir / "agent-tpm"))
    try:
        agent = await FakeAgent.create(tpm)
        (workdir / "agent-cert.pem").write_text(agent.cert_pem)
        (workdir / "agent-key.pem").write_bytes(agent.key_pem)
        hc = mtls_config(workdir / "agent-cert.pem", workdir / "agent-key.pem", tls.ca_cert)
        socks = [bind(LOOPBACK, 0, 16) for _ in range(AGENTS + 1)]
        ports = [s.getsockname()[1] for s in socks]
        await nursery.start(partial(serve_app, watch.wrap(agent.app()), hc, tls=tuple(socks)))
        yield agent, ports
    finally:
        await tpm.aclose()


class VerifierProcess:
    """One ``python -m verifier_lite.cli`` process and its admin port."""

    def __init__(self, uuid: str, config: Path, log: Path) -> None:
        self.uuid = uuid
        self._config = config
        self._log = log
        self.port = 0
        self.process: subprocess.Popen[str] | None = None

    async def start(self) -> None:
        with self._log.open("a") as stderr:
            self.process = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                [sys.executable, "-m", "verifier_lite.cli", "-c", str(self._config)],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        assert self.process.stdout is not None
        with trio.fail_after(120):
            line = await trio.to_thread.run_sync(self.process.stdout.readline)
        assert line.startswith("limelet-verifier: mTLS "), self._log.read_text()
        self.port = int(line.split()[-1])

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: no clean stop, its leases must expire
        self.process.wait(timeout=30)
        self._close()

    def _close(self) -> None:
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self._close()


def write_config(path: Path, uuid: str, tls: TlsFiles, url: str) -> Path:
    path.mkdir(parents=True)
    text = (
        f'[verifier]\nuuid = "{uuid}"\nip = "{LOOPBACK}"\nport = 0\ndata_dir = "{path}"\n'
        f'tls_dir = "{tls.directory}"\ndatabase_url = "{url}"\nquote_interval = 0.5\n'
        "retry_interval = 0.2\nexponential_backoff = false\nmax_retries = 3\n"
        f"request_timeout = 5.0\nlease_seconds = {TIMES.duration}\n"
        f"lease_renew_seconds = {TIMES.renew}\nlease_margin_seconds = {TIMES.margin}\n"
    )
    (path / "verifier.toml").write_text(text)
    return path / "verifier.toml"


@dataclass(frozen=True)
class Row:
    state: int
    count: int
    verifier_id: str
    event_id: str | None
    holder: str | None


def _read(url: str) -> dict[str, Row]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT a.agent_id, a.operational_state, a.attestation_count, a.verifier_id, "
            "a.last_event_id, CASE WHEN l.expires_at > clock_timestamp() THEN l.holder END "
            "FROM verifier_agents a LEFT JOIN agent_leases l ON l.agent_id = a.agent_id"
        ).fetchall()
    return {str(r[0]): Row(int(r[1]), int(r[2]), str(r[3]), r[4], r[5]) for r in rows}


async def read(url: str) -> dict[str, Row]:
    return await trio.to_thread.run_sync(_read, url)


async def wait_for(url: str, done: Callable[[dict[str, Row]], bool], seconds: float) -> float:
    """Poll the database until ``done``; the seconds it took."""
    started = trio.current_time()
    with trio.fail_after(seconds):
        while not done(await read(url)):  # noqa: ASYNC110 - other processes write it
            await trio.sleep(POLL_SECONDS)
    return trio.current_time() - started


def held_by(rows: dict[str, Row]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows.values():
        if row.holder is not None:
            counts[row.holder] = counts.get(row.holder, 0) + 1
    return counts


def balanced(live: tuple[str, ...]) -> Callable[[dict[str, Row]], bool]:
    """Every agent held, by live verifiers only, none above its fair share."""

    def check(rows: dict[str, Row]) -> bool:
        share = fair_share(len(rows), len(live))
        counts = held_by(rows)
        every = all(r.holder in live for r in rows.values())
        return every and all(counts.get(v, 0) <= share for v in live)

    return check


async def enrol(
    verifier: VerifierProcess, tls: TlsFiles, agent: FakeAgent, port: int, agent_id: str
) -> None:
    extra = {"tpm_policy": BAD_POLICY} if agent_id == BAD else {}
    body = add_body(ak_tpm=agent.ak_public, mtls_cert=agent.cert_pem, port=port)
    body.update(extra)
    async with httpx.AsyncClient(
        base_url=f"https://{LOOPBACK}:{verifier.port}", verify=tls.client_context(), timeout=30
    ) as client:
        response = await client.post(f"/{API}/agents/{agent_id}", json=body)
    assert response.status_code == 200, response.text


def attested_since(
    before: dict[str, Row], ids: Set[str], by: tuple[str, ...], times: int = 2
) -> Callable[[dict[str, Row]], bool]:
    def check(rows: dict[str, Row]) -> bool:
        return all(
            rows[i].count >= before[i].count + times
            and rows[i].state == State.GET_QUOTE
            and rows[i].verifier_id in by
            for i in ids
        )

    return check


@dataclass(frozen=True)
class Fleet:
    url: str
    verifiers: dict[str, VerifierProcess]
    watch: QuoteWatch
    good: frozenset[str]


@asynccontextmanager
async def three_verifiers(
    nursery: trio.Nursery, swtpm: Swtpm, tls: TlsFiles, tmp_path: Path, url: str
) -> AsyncIterator[Fleet]:
    """Three verifier processes, the fleet enrolled through the first, every honest agent
    attested twice, the bad one failed, and the leases at fair shares."""
    watch = QuoteWatch()
    verifiers = {
        v: VerifierProcess(v, write_config(tmp_path / v, v, tls, url), tmp_path / f"{v}.log")
        for v in VERIFIERS
    }
    try:
        async with fleet(nursery, swtpm, tls, tmp_path, watch) as (agent, ports):
            for v in verifiers.values():
                await v.start()
            bad_port, *good_ports = ports
            await enrol(verifiers[VERIFIERS[0]], tls, agent, bad_port, BAD)
            for port in good_ports:
                await enrol(verifiers[VERIFIERS[0]], tls, agent, port, f"agent-{port}")
            rows = await read(url)
            good = frozenset(i for i in rows if i != BAD)
            assert len(good) == AGENTS
            zero = {i: Row(0, 0, "", None, None) for i in rows}
            await wait_for(url, attested_since(zero, good, VERIFIERS), 120 + SLACK_SECONDS)
            await wait_for(url, lambda r: r[BAD].state == State.INVALID_QUOTE, SLACK_SECONDS)
            await wait_for(url, balanced(VERIFIERS), SLACK_SECONDS)
            yield Fleet(url, verifiers, watch, good)
    finally:
        for v in verifiers.values():
            v.stop()


def busiest(rows: dict[str, Row], among: tuple[str, ...] = VERIFIERS) -> str:
    return max(among, key=lambda v: held_by(rows).get(v, 0))


async def rejoined(f: Fleet, verifier: str) -> None:
    """``verifier`` is back at its share and attests its agents; the others hold theirs."""
    # The others keep up to ceil(13 / 3) = 5 each, so the newcomer's share is what is left.
    share = AGENTS + 1 - (len(VERIFIERS) - 1) * fair_share(AGENTS + 1, len(VERIFIERS))
    await wait_for(
        f.url,
        lambda r: balanced(VERIFIERS)(r) and held_by(r).get(verifier, 0) >= share,
        TIMES.takeover_bound + SLACK_SECONDS,
    )
    rows = await read(f.url)
    back = {i for i in f.good if rows[i].holder == verifier}
    await wait_for(f.url, attested_since(rows, back, (verifier,)), SLACK_SECONDS)


async def test_kill_one_of_three_verifiers(
    nursery: trio.Nursery, swtpm: Swtpm, tls_files: TlsFiles, tmp_path: Path, postgres_url: str
) -> None:
    async with three_verifiers(nursery, swtpm, tls_files, tmp_path, postgres_url) as f:
        rows = await read(f.url)
        verdict = rows[BAD]
        assert verdict.event_id == "pcr_validation.invalid_pcr_23"
        victim = busiest(rows)
        survivors = tuple(v for v in VERIFIERS if v != victim)
        orphans = {i for i in f.good if rows[i].holder == victim}
        assert orphans  # fair share 4 or 5 of 12 honest + 1 bad
        f.verifiers[victim].kill()
        bound = TIMES.takeover_bound + SLACK_SECONDS
        took = await wait_for(f.url, attested_since(rows, orphans, survivors, times=1), bound)
        await wait_for(f.url, attested_since(rows, orphans, survivors), SLACK_SECONDS)
        after = await read(f.url)
        assert balanced(survivors)(after)
        assert after[BAD].state == State.INVALID_QUOTE  # the verdict outlived its verifier
        assert after[BAD].event_id == verdict.event_id
        print(f"take-over: all agents attested again {took:.1f} s after kill -9 "
              f"(lease bound {TIMES.takeover_bound} s + a quote)")  # fmt: skip

        await f.verifiers[victim].start()  # rejoins under the same uuid
        await rejoined(f, victim)
        assert f.watch.overlaps == []  # no agent was ever asked by two verifiers at once
        assert all(n > 0 for n in f.watch.quotes.values())


async def test_frozen_stopped_and_restarted_verifiers(
    nursery: trio.Nursery, swtpm: Swtpm, tls_files: TlsFiles, tmp_path: Path, postgres_url: str
) -> None:
    """SIGSTOP past the lease: the others take over, and the verifier that wakes sends
    nothing more to them before it is back at a share.  SIGTERM: the leases are handed back
    and the heartbeat marked gone.  kill -9 and an immediate restart: the fleet settles."""
    async with three_verifiers(nursery, swtpm, tls_files, tmp_path, postgres_url) as f:
        rows = await read(f.url)
        frozen = busiest(rows)
        others = tuple(v for v in VERIFIERS if v != frozen)
        orphans = {i for i in f.good if rows[i].holder == frozen}
        process = f.verifiers[frozen].process
        assert process is not None
        process.send_signal(signal.SIGSTOP)
        try:
            bound = TIMES.takeover_bound + SLACK_SECONDS
            await wait_for(f.url, attested_since(rows, orphans, others), bound)
        finally:
            process.send_signal(signal.SIGCONT)
        await rejoined(f, frozen)
        log = (tmp_path / f"{frozen}.log").read_text()
        assert "no renewal in time" in log or "lease not renewed" in log, log[-3000:]
        assert f.watch.overlaps == []

        rows = await read(f.url)
        stopping = busiest(rows)
        f.verifiers[stopping].stop()  # SIGTERM: a clean stop
        stopped = f.verifiers[stopping].process
        assert stopped is not None and stopped.returncode == 0
        assert await heartbeat_gone(f.url, stopping)
        remaining = tuple(v for v in VERIFIERS if v != stopping)
        mine = {i for i in f.good if rows[i].holder == stopping}
        await wait_for(f.url, attested_since(rows, mine, remaining), SLACK_SECONDS)
        await f.verifiers[stopping].start()
        await rejoined(f, stopping)

        rows = await read(f.url)
        restarted = busiest(rows)
        f.verifiers[restarted].kill()
        await f.verifiers[restarted].start()  # often within its leases: it adopts them
        await rejoined(f, restarted)
        assert f.watch.overlaps == []


async def heartbeat_gone(url: str, verifier: str) -> bool:
    def run() -> bool:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT expires_at = '-infinity' FROM verifier_heartbeats WHERE verifier_id = %s",
                (verifier,),
            ).fetchone()
        return bool(row and row[0])

    return await trio.to_thread.run_sync(run)


async def test_the_watch_sees_two_requests_at_once() -> None:
    """The overlap check can fail: two quote requests in flight on one port are recorded."""
    watch = QuoteWatch()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await trio.lowlevel.checkpoint()

    asgi = watch.wrap(app)
    scope = {"type": "http", "path": "/v2.2/quotes/integrity", "server": (LOOPBACK, 9002)}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(asgi, scope, None, None)
        nursery.start_soon(asgi, scope, None, None)
    assert watch.overlaps == [(9002, 2)]
    assert watch.in_flight == {9002: 0}
