"""One simulator process: serves agents ``start..stop-1`` of a fleet until told to quit.

Run as ``python -m bench.fleet.worker MATERIAL_DIR START STOP PORT CA [CA...]``.  It binds every
agent's address, prints ``{"ready": n}`` and then answers line commands on stdin with one
JSON line on stdout: ``stats`` (quotes served, intervals between quotes per agent, the time
each agent first got a partial quote, its own CPU seconds), ``reset`` (forget counters) and
``quit``.  Several workers split a fleet so the simulator is not the bottleneck
(bench/fleet/fleet.py).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Optional

import trio

from attest_protocol.tpm2.attest import ClockInfo
from attest_protocol.tpm2.pcr import parse_mask
from bench.fleet import identity
from bench.fleet.quote import AgentTpm, data_pcr
from bench.fleet.server import Request, serve_connection, server_context

AGENT_VERSIONS = ("2.1", "2.2")
LISTEN_BACKLOG = 64
BOOTTIME = 1_700_000_000


@dataclass
class SimAgent:
    index: int
    tpm: AgentTpm
    nk_pem: str
    clock_ms: int = 0
    quotes: list[float] = field(default_factory=list)
    first_partial: Optional[float] = None
    v_delivered: bool = False

    def next_clock(self) -> ClockInfo:
        self.clock_ms = max(self.clock_ms + 1, int(time.monotonic() * 1000))
        return ClockInfo(self.clock_ms, 0, 0, True)

    async def handle(self, request: Request) -> tuple[int, dict[str, Any]]:
        parts = request.path.strip("/").split("/")
        if request.method == "GET" and parts == ["version"]:
            return 200, {
                "supported_version": AGENT_VERSIONS[-1],
                "supported_versions": list(AGENT_VERSIONS),
            }
        quote_kind = parts[2] if len(parts) == 3 and parts[1] == "quotes" else ""
        if quote_kind in ("identity", "integrity") and request.method == "GET":
            return self._quote(request.query, identity_quote=quote_kind == "identity")
        if len(parts) == 3 and parts[1] in ("keys", "notifications") and request.method == "POST":
            self.v_delivered = self.v_delivered or parts[2] == "vkey"
            return 200, {}
        return 404, {}

    def _quote(self, query: dict[str, str], *, identity_quote: bool) -> tuple[int, dict[str, Any]]:
        try:
            nonce = query["nonce"].encode("ascii")
            mask = (1 << 16) if identity_quote else parse_mask(query.get("mask", "0x10000"))
        except (KeyError, ValueError, UnicodeEncodeError):
            return 400, {}
        mask |= 1 << 16  # the agent always adds the data PCR (rust-keylime quotes_handler)
        quote = self.tpm.quote(nonce, mask, self.next_clock())
        now = time.time()
        full = identity_quote or query.get("partial") == "0"
        self.quotes.append(now)
        if not full and self.first_partial is None:
            self.first_partial = now
        results: dict[str, Any] = {
            "quote": quote.encode(),
            "hash_alg": "sha256",
            "enc_alg": "ecc",
            "sign_alg": "ecdsa",
        }
        if full:
            results["pubkey"] = self.nk_pem
        if not identity_quote:
            results.update(
                boottime=BOOTTIME, ima_measurement_list=None, ima_measurement_list_entry=0,
                mb_measurement_list=None,
            )  # fmt: skip
        return 200, results


def make_agents(material: identity.SharedMaterial, start: int, stop: int) -> list[SimAgent]:
    nk_pem = identity.nk_public_pem(material.nk_private())
    pcr16 = data_pcr(nk_pem)
    agents = []
    for index in range(start, stop):
        ak = identity.ak_private(index)
        agents.append(SimAgent(index, AgentTpm(ak, identity.ak_public(ak).name(), pcr16), nk_pem))
    return agents


def stats(agents: list[SimAgent], since: float) -> dict[str, Any]:
    intervals: list[float] = []
    for agent in agents:
        times = [t for t in agent.quotes if t >= since]
        intervals.extend(round(b - a, 4) for a, b in zip(times, times[1:]))
    usage = os.times()
    return {
        "quotes": sum(len(a.quotes) for a in agents),
        "silent": sum(not a.quotes for a in agents),
        "intervals": intervals,
        "first_partial": {str(a.index): a.first_partial for a in agents},
        "v_delivered": sum(a.v_delivered for a in agents),
        "cpu_seconds": usage.user + usage.system,
    }


async def _serve_agent(agent: SimAgent, port: int, ctx: Any, nursery: trio.Nursery) -> None:
    sock = trio.socket.socket()
    sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
    await sock.bind((identity.agent_ip(agent.index), port))
    sock.listen(LISTEN_BACKLOG)
    listener = trio.SSLListener(trio.SocketListener(sock), ctx, https_compatible=True)
    nursery.start_soon(
        partial(trio.serve_listeners, partial(serve_connection, handler=agent.handle), [listener])
    )


async def _commands(agents: list[SimAgent], cancel: trio.CancelScope) -> None:
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buffer = b""
    since = 0.0
    while True:
        chunk = await stdin.receive_some(4096)
        if not chunk:
            break
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            command = line.decode().strip()
            if command == "stats":
                print(json.dumps(stats(agents, since)), flush=True)
            elif command == "reset":
                since = time.time()
                for agent in agents:
                    agent.quotes, agent.first_partial, agent.v_delivered = [], None, False
                print(json.dumps({"reset": True}), flush=True)
            elif command == "quit":
                cancel.cancel()
                return
    cancel.cancel()


async def main_async(
    material: identity.SharedMaterial, start: int, stop: int, port: int, cas: list[str]
) -> None:
    agents = make_agents(material, start, stop)
    ctx = server_context(str(material.cert), str(material.key), cas)
    async with trio.open_nursery() as nursery:
        for agent in agents:
            await _serve_agent(agent, port, ctx, nursery)
        print(json.dumps({"ready": len(agents)}), flush=True)
        await _commands(agents, nursery.cancel_scope)


def main(argv: list[str]) -> int:
    material = identity.SharedMaterial(Path(argv[0]))
    trio.run(main_async, material, int(argv[1]), int(argv[2]), int(argv[3]), argv[4:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
