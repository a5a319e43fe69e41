"""Hypothesis strategies and the envelope check for the services' property-based fuzz tests.

Bodies are generated JSON (objects keyed by the services' real field names or by anything),
mutated real bodies, and raw bytes; every answer must be Keylime's envelope with a 2xx or 4xx
status, and the service must keep answering afterwards.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Optional
from urllib.parse import quote

import httpx
import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

START_TIMEOUT_SECONDS = 30.0
# Enough to cover each route many times while the suite stays quick on a shared machine.
EXAMPLES = 400
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    # The service is started once per test and fuzzed by every example: that is the point.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Values that broke the services before: non-ASCII digits (str.isdigit accepts "²"), a lone
# surrogate, non-ASCII letters in base64 fields, JSON text nested deep.
HOSTILE_TEXT = ["\u00b2", "\u0663", "\ud800", "\u00e9AAA", "[" * 5_000 + "]" * 5_000]
DEPTHS = [65, 1_000, 5_000, 10_000, 20_000]
_scalars = st.one_of(
    st.sampled_from(HOSTILE_TEXT),
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


def bodies(field_names: list[str], real: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """Raw request bodies: field-keyed objects, a real body with fields replaced, raw bytes."""
    keyed = st.dictionaries(st.sampled_from(field_names), json_values, max_size=len(field_names))
    mutated = st.dictionaries(st.sampled_from(field_names), json_values, max_size=3).map(
        lambda changes: {**real, **changes}
    )
    as_json = st.one_of(keyed, mutated, json_values).map(
        lambda value: json.dumps(value).encode("ascii")
    )
    nested = st.sampled_from(DEPTHS).map(lambda n: b"[" * n + b"]" * n)
    return st.one_of(as_json, st.binary(max_size=200), nested, nested)


def path_segment() -> st.SearchStrategy[str]:
    """An agent id or policy name as a path segment: mostly valid (so bodies get read),
    sometimes empty or anything quoted."""
    valid = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)
    return st.one_of(
        valid,
        valid,
        valid,
        st.just(""),
        st.text(max_size=30).map(lambda text: quote(text, safe="")),
    )


def versions(served: list[str]) -> st.SearchStrategy[str]:
    """Mostly a served API version, so the route's own checks run; sometimes not."""
    return st.one_of(
        st.sampled_from(served), st.sampled_from(served), st.sampled_from(["v9.9", "x"])
    )


def queries() -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(
        st.sampled_from(["verifier", "bulk", "nonce", "x"]), st.text(max_size=10), max_size=2
    )


def assert_envelope(response: httpx.Response) -> None:
    """Keylime's envelope with a 2xx/4xx code equal to the HTTP status."""
    assert 200 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/json", response.text[:300]
    body = response.json()
    assert set(body) == {"code", "status", "results"}, body
    assert body["code"] == response.status_code


class ServiceThread:
    """A service's ``serve_*`` in its own Trio run on a thread, so that synchronous Hypothesis
    examples (each would otherwise be a fresh Trio run) all hit one long-lived service."""

    def __init__(self, serve: Callable[..., Awaitable[None]], config: Any) -> None:
        self._serve = serve
        self._config = config
        self._ready: queue.Queue[Any] = queue.Queue()
        self._token: Optional[trio.lowlevel.TrioToken] = None
        self._scope: Optional[trio.CancelScope] = None
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    async def _main(self) -> None:
        async with trio.open_nursery() as nursery:
            self._token = trio.lowlevel.current_trio_token()
            self._scope = nursery.cancel_scope
            try:
                bound = await nursery.start(self._serve, self._config)
            except BaseException as exc:
                self._ready.put(exc)
                raise
            self._ready.put(bound)

    def __enter__(self) -> Any:
        self._thread.start()
        bound = self._ready.get(timeout=START_TIMEOUT_SECONDS)
        if isinstance(bound, BaseException):
            raise bound
        return bound

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None and self._scope is not None
        trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
        self._thread.join(timeout=START_TIMEOUT_SECONDS)
