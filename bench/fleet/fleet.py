"""A fleet: worker processes hosting the agents, their counters, and tenant-style enrolment.

``Fleet.start(n, workers, ...)`` splits agents 0..n-1 evenly over ``workers`` processes
(bench/fleet/worker.py).  Enrolment posts to the verifier exactly the body Keylime 7.14.3's
tenant builds in ``do_cvadd`` from the registrar's record (AK, mTLS certificate, address);
the registrar itself is left out: the simulator writes what the registrar would return
straight into that body, which is all the verifier ever sees of it.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bench.fleet import identity

READY_TIMEOUT_SECONDS = 600.0
DEFAULT_TPM_POLICY = '{"mask": "0x10000"}'


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def enrol_body(
    index: int,
    material: identity.SharedMaterial,
    verifier: tuple[str, int],
    port: int = identity.AGENT_PORT,
) -> dict[str, Any]:
    """``POST /v2.1/agents/{id}`` as the tenant sends it (keylime/tenant.py do_cvadd)."""
    ak = identity.ak_public(identity.ak_private(index))
    return {
        "v": b64(secrets.token_bytes(32)),
        "cloudagent_ip": identity.agent_ip(index),
        "cloudagent_port": port,
        "verifier_ip": verifier[0],
        "verifier_port": verifier[1],
        "tpm_policy": DEFAULT_TPM_POLICY,
        "runtime_policy": "",
        "runtime_policy_name": "",
        "runtime_policy_key": None,
        "mb_policy": None,
        "mb_policy_name": "",
        "ima_sign_verification_keys": "",
        "metadata": "{}",
        "revocation_key": "",
        "accept_tpm_hash_algs": ["sha512", "sha384", "sha256"],
        "accept_tpm_encryption_algs": ["ecc", "rsa"],
        "accept_tpm_signing_algs": ["ecschnorr", "rsassa", "ecdsa"],
        "ak_tpm": b64(ak.to_tpm2b()),
        "mtls_cert": material.cert_pem(),
        "supported_version": "2.1",
    }


def _pipe(stream: IO[bytes] | None) -> IO[bytes]:
    if stream is None:
        raise RuntimeError("fleet worker started without pipes")
    return stream


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]

    @property
    def stdin(self) -> IO[bytes]:
        return _pipe(self.process.stdin)

    @property
    def stdout(self) -> IO[bytes]:
        return _pipe(self.process.stdout)

    def ask(self, command: str) -> dict[str, Any]:
        self.stdin.write(command.encode() + b"\n")
        self.stdin.flush()
        line = self.stdout.readline()
        if not line:
            raise RuntimeError(f"fleet worker {self.process.pid} exited")
        answer: dict[str, Any] = json.loads(line)
        return answer


class Fleet:
    def __init__(
        self, n: int, material: identity.SharedMaterial, workers: list[_Worker], port: int
    ) -> None:
        self.n = n
        self.port = port
        self.material = material
        self._workers = workers

    @classmethod
    def start(
        cls,
        n: int,
        workers: int,
        directory: Path,
        client_cas: Sequence[Path],
        port: int = identity.AGENT_PORT,
    ) -> Fleet:
        material = identity.make_shared_material(directory)
        cuts = [n * w // workers for w in range(workers + 1)]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        started = []
        for start, stop in zip(cuts, cuts[1:]):
            argv = [
                sys.executable,
                "-m",
                "bench.fleet.worker",
                str(directory),
                str(start),
                str(stop),
                str(port),
            ]
            process = subprocess.Popen(
                [*argv, *map(str, client_cas)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
            started.append(_Worker(process))
        fleet = cls(n, material, started, port)
        for worker in started:
            line = worker.stdout.readline()
            if not line or "ready" not in json.loads(line):
                fleet.close()
                raise RuntimeError("a fleet worker did not start")
        return fleet

    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers]

    def stats(self) -> dict[str, Any]:
        parts = [w.ask("stats") for w in self._workers]
        first: dict[str, Any] = {}
        for part in parts:
            first.update(part["first_partial"])
        return {
            "quotes": sum(p["quotes"] for p in parts),
            "silent": sum(p["silent"] for p in parts),
            "intervals": [i for p in parts for i in p["intervals"]],
            "first_partial": first,
            "v_delivered": sum(p["v_delivered"] for p in parts),
            "cpu_seconds": sum(p["cpu_seconds"] for p in parts),
        }

    def reset(self) -> None:
        for worker in self._workers:
            worker.ask("reset")

    def close(self) -> None:
        for worker in self._workers:
            try:
                worker.stdin.write(b"quit\n")
                worker.stdin.close()
            except (BrokenPipeError, ValueError):
                pass
        for worker in self._workers:
            try:
                worker.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            worker.stdout.close()
