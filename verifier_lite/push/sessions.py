"""Sessions: a single-use PoP challenge, then a bearer token kept only as a salted hash.

Keylime 7.14.3 (keylime/models/verifier/auth_session.py, keylime/web/verifier/
session_controller.py): ``POST /sessions`` hands out a 128-bit challenge valid for
``nonce_lifetime`` (60 s); ``PATCH /sessions/{id}`` with a good proof turns it into a token
``{session_id}.{secret}`` valid for ``session_lifetime`` (180 s) and extended by each passed
attestation.  A failed proof deletes the session, so the challenge is used at most once.
Keylime hashes the token with PBKDF2 (600k rounds); the secret here is 256 random bits, for
which one salted SHA-256 is as hard to invert and costs the verifier nothing per request.

Rate limits (keylime/models/verifier/rate_limiter.py): 50 session creations per source
address and 15 per agent id in any 60 s; past that 429 with Retry-After.

Pure and in memory; routes.py writes each active session (salt and hash only) to the store
(persist.py), so tokens survive a restart.  Pending challenges and the rate-limit counters do
not: after a restart an agent at most proves possession once more (rust-keylime auth.rs).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

from verifier_lite.push.errors import PushError

CHALLENGE_BYTES = 16  # Keylime generate_challenge(128)


@dataclass(frozen=True)
class SessionSettings:
    nonce_lifetime: float = 60.0
    session_lifetime: float = 180.0
    per_address: int = 50
    address_window: float = 60.0
    per_agent: int = 15
    agent_window: float = 60.0


@dataclass
class Session:
    session_id: str
    agent_id: str
    challenge: bytes
    created_at: float
    challenges_expire_at: float
    token_salt: bytes = b""
    token_hash: bytes = b""  # empty until the proof succeeded
    token_expires_at: float = 0.0


def _hash(salt: bytes, token: str) -> bytes:
    return hashlib.sha256(salt + token.encode("utf-8")).digest()


@dataclass
class _Window:
    limit: int
    seconds: float
    hits: dict[str, deque[float]] = field(default_factory=dict)

    def retry_after(self, key: str, now: float) -> Optional[int]:
        times = self.hits.setdefault(key, deque())
        while times and times[0] <= now - self.seconds:
            times.popleft()
        if len(times) >= self.limit:
            return max(1, int(times[0] + self.seconds - now + 0.999))
        return None

    def hit(self, key: str, now: float) -> None:
        self.hits.setdefault(key, deque()).append(now)


class SessionTable:
    """Pending and active sessions; ``clock`` is injectable so tests need not sleep."""

    def __init__(self, settings: SessionSettings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._by_address = _Window(settings.per_address, settings.address_window)
        self._by_agent = _Window(settings.per_agent, settings.agent_window)

    def create(self, agent_id: str, address: str) -> Session:
        now = self.clock()
        self._purge(now)
        for window, key in ((self._by_address, address), (self._by_agent, agent_id)):
            wait = window.retry_after(key, now)
            if wait is not None:
                raise PushError(429, "rate_limited", "too many sessions", retry_after=wait)
        self._by_address.hit(address, now)
        self._by_agent.hit(agent_id, now)
        session = Session(
            session_id=str(uuid.uuid4()),
            agent_id=agent_id,
            challenge=secrets.token_bytes(CHALLENGE_BYTES),
            created_at=now,
            challenges_expire_at=now + self.settings.nonce_lifetime,
        )
        self._sessions[session.session_id] = session
        return session

    def pending(self, session_id: str) -> Optional[Session]:
        session = self._sessions.get(session_id)
        if session is None or session.token_hash:
            return None  # unknown, or its challenge was already answered
        return session

    def discard(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def restore(self, session: Session) -> None:
        self._sessions[session.session_id] = session

    def known(self, session_id: str) -> bool:
        return session_id in self._sessions

    def activate(self, session: Session) -> tuple[str, list[str]]:
        """The plaintext token, handed out once (only its hash stays), and the ids of the
        agent's earlier sessions, which end (Keylime deletes them once a new proof
        succeeded)."""
        ended = [
            s.session_id
            for s in self._sessions.values()
            if s.agent_id == session.agent_id and s is not session
        ]
        for session_id in ended:
            self.discard(session_id)
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        token = f"{session.session_id}.{secret}"
        session.token_salt = secrets.token_bytes(16)
        session.token_hash = _hash(session.token_salt, token)
        session.token_expires_at = self.clock() + self.settings.session_lifetime
        return token, ended

    def agent_for(self, token: str) -> Optional[Session]:
        """The active, unexpired session the token belongs to, or None."""
        session = self._sessions.get(token.partition(".")[0])
        if session is None or not session.token_hash:
            return None
        if not hmac.compare_digest(_hash(session.token_salt, token), session.token_hash):
            return None
        if self.clock() >= session.token_expires_at:
            return None
        return session

    def extend(self, session: Session) -> None:
        session.token_expires_at = self.clock() + self.settings.session_lifetime

    def stored_secrets(self) -> list[bytes]:
        """What the table keeps of each token (for tests: never the token itself)."""
        return [s.token_hash for s in self._sessions.values() if s.token_hash]

    def _purge(self, now: float) -> None:
        for s in list(self._sessions.values()):
            live = s.token_expires_at if s.token_hash else s.challenges_expire_at
            if now >= live:
                del self._sessions[s.session_id]
