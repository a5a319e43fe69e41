"""The status page's HTML, pure: rows and events in, escaped text out.

Nothing here reads the store or the clock.  A row (:class:`AgentRow`) is built from an
``AgentRecord`` by copying only what the page shows, so V, the NK public key, the AK, the
mTLS certificate, the revocation key and the payload never reach the renderer at all; every
value that does is escaped with ``html.escape`` (an agent id or an IMA path is whatever the
tenant or the agent sent).  The attestation status is the one ``GET /agents/{id}`` answers
(records.attestation_status: PASS only while the last good quote is younger than
5 x quote_interval).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Optional

from verifier_lite.records import AgentRecord, attestation_status
from verifier_lite.states import NAMES, State
from verifier_lite.timeline import TimelineEvent, event_words, evidence, plain_reason

# The page asks for a fresh fragment this often (status.js reads it from the page).
REFRESH_MILLISECONDS = 3000
STATUS_ORDER = ("FAIL", "PENDING", "PASS")  # failures first
STATUS_FILTERS = ("", *STATUS_ORDER)


@dataclass(frozen=True)
class AgentRow:
    agent_id: str
    contact: str
    state: int
    status: str  # PASS, FAIL or PENDING
    age_seconds: Optional[float]  # since the last successful attestation; None: never
    attestation_count: int
    last_event_id: Optional[str]
    ima_entries: Optional[int]  # IMA log entries checked so far; None: no runtime policy
    runtime_policy_name: str = ""
    mb_policy_name: str = ""


def agent_row(
    agent: AgentRecord, *, now: float, max_interval: float, ima_entries: Optional[int]
) -> AgentRow:
    last = agent.last_successful_attestation
    return AgentRow(
        agent_id=agent.agent_id,
        contact=f"{agent.ip}:{agent.port}",
        state=agent.operational_state,
        status=attestation_status(agent, now=now, max_interval=max_interval),
        age_seconds=max(0.0, now - last) if last > 0 else None,
        attestation_count=agent.attestation_count,
        last_event_id=agent.last_event_id,
        ima_entries=ima_entries,
        runtime_policy_name=agent.runtime_policy_name,
        mb_policy_name=agent.mb_policy_name,
    )


def sort_rows(rows: Iterable[AgentRow]) -> list[AgentRow]:
    return sorted(rows, key=lambda r: (STATUS_ORDER.index(r.status), r.agent_id))


def select_rows(rows: Iterable[AgentRow], status: str, query: str) -> list[AgentRow]:
    """Rows with attestation status ``status`` ("" for all) whose id contains ``query``."""
    needle = query.casefold()
    return sort_rows(
        r for r in rows if (not status or r.status == status) and needle in r.agent_id.casefold()
    )


def age_text(seconds: Optional[float]) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{int(seconds)} s ago"
    if seconds < 7200:
        return f"{int(seconds // 60)} min ago"
    if seconds < 172800:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} days ago"


def state_name(state: int) -> str:
    try:
        return NAMES[State(state)]
    except ValueError:
        return f"state {state}"


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def page(title: str, body: str, live_src: str, controls: str = "") -> str:
    """A whole page: ``controls`` (the filter form), then ``body`` inside the block that
    status.js refreshes from ``live_src`` (outside it, typing in the form is never undone)."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<title>{_e(title)}</title><link rel="stylesheet" href="/static/status.css">'
        '<script src="/static/status.js" defer></script></head><body>'
        f'<header><a href="/">limelet verifier</a> &middot; {_e(title)}</header>{controls}'
        f'<main id="live" data-src="{_e(live_src)}" data-refresh="{REFRESH_MILLISECONDS}">'
        f"{body}</main></body></html>\n"
    )


def filter_form(status: str, query: str) -> str:
    options = "".join(
        f'<option value="{_e(s)}"{" selected" if s == status else ""}>{_e(s or "all")}</option>'
        for s in STATUS_FILTERS
    )
    return (
        '<form id="filters" method="get" action="/">'
        f'<label>Status <select name="status">{options}</select></label> '
        f'<label>Agent id <input type="search" name="q" value="{_e(query)}" '
        'autocomplete="off"></label> <noscript><button>Filter</button></noscript></form>'
    )


def fleet_fragment(
    all_rows: Sequence[AgentRow], shown: Sequence[AgentRow], max_interval: float, now: float
) -> str:
    """The summary of every agent and the table of the ``shown`` ones."""
    by_status = Counter(r.status for r in all_rows)
    by_state = Counter(r.state for r in all_rows)
    summary = "".join(
        f'<span class="count {s.lower()}" data-status="{s}">{s} {by_status.get(s, 0)}</span>'
        for s in STATUS_ORDER
    )
    states = ", ".join(
        f"{_e(state_name(st))}: {n}"
        for st, n in sorted(by_state.items(), key=lambda i: (_failed_first(i[0]), i[0]))
    )
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "Agent",
            "Contact",
            "State",
            "Status",
            "Last attestation",
            "Attestations",
            "Last event",
            "IMA entries checked",
        )
    )
    body = "".join(_fleet_row(r) for r in shown) or (
        '<tr><td colspan="8" class="empty">no agent matches</td></tr>'
    )
    return (
        f'<section id="summary"><h1>{_agents(len(all_rows))}</h1><p>{summary}</p>'
        f'<p class="states">{states}</p><p class="rule">PASS means a good quote within the '
        f"last {max_interval:g} s (5 &times; quote_interval); an older one reads PENDING."
        f'</p><p class="stamp">as of {_e(_utc(now))}</p></section>'
        f'<table id="agents"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def _agents(n: int) -> str:
    return "1 agent" if n == 1 else f"{n} agents"


def _failed_first(state: int) -> int:
    return 0 if state in (State.FAILED, State.INVALID_QUOTE, State.TENANT_FAILED) else 1


def _fleet_row(r: AgentRow) -> str:
    reason = plain_reason(r.last_event_id)
    event = "" if not r.last_event_id else f"<code>{_e(r.last_event_id)}</code> {_e(reason)}"
    ima = "&ndash;" if r.ima_entries is None else _e(r.ima_entries)
    link = f"/agents/{_e(r.agent_id)}"
    cells = (
        f'<td class="id"><a href="{link}">{_e(r.agent_id)}</a></td>'
        f'<td>{_e(r.contact)}</td><td class="state">{_e(state_name(r.state))}</td>'
        f'<td class="status">{_e(r.status)}</td><td>{_e(age_text(r.age_seconds))}</td>'
        f'<td>{_e(r.attestation_count)}</td><td class="reason">{event}</td><td>{ima}</td>'
    )
    return f'<tr class="{r.status.lower()}" data-agent="{_e(r.agent_id)}">{cells}</tr>'


def agent_fragment(row: AgentRow, events: Sequence[TimelineEvent], now: float) -> str:
    """One agent: its facts, the last failure with its evidence, and its timeline."""
    facts = (
        ("Contact", row.contact),
        ("State", state_name(row.state)),
        ("Status", row.status),
        ("Last attestation", age_text(row.age_seconds)),
        ("Attestations", str(row.attestation_count)),
        ("IMA entries checked", "-" if row.ima_entries is None else str(row.ima_entries)),
        ("Runtime policy", row.runtime_policy_name or "(none)"),
        ("Measured-boot policy", row.mb_policy_name or "(none)"),
    )
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
    return (
        f'<section id="agent" class="{row.status.lower()}"><h1>{_e(row.agent_id)}</h1>'
        f"<dl>{dl}</dl></section>{_last_failure(row, events)}"
        f'<section id="timeline"><h2>Timeline (newest first)</h2>{_timeline(events)}'
        f'<p class="stamp">as of {_e(_utc(now))}</p></section>'
    )


def _last_failure(row: AgentRow, events: Sequence[TimelineEvent]) -> str:
    if not row.last_event_id:
        return ""
    found = next((e for e in events if e.event_id == row.last_event_id), None)
    rows = evidence(row.last_event_id, None if found is None else found.context)
    table = "".join(f"<tr><th>{_e(k)}</th><td><code>{_e(v)}</code></td></tr>" for k, v in rows)
    when = "" if found is None else f" at {_e(_utc(found.at))}"
    return (
        f'<section id="failure"><h2>Last failure{when}</h2><p><code>'
        f"{_e(row.last_event_id)}</code>: {_e(plain_reason(row.last_event_id))}</p>"
        f'<table class="evidence">{table}</table></section>'
    )


def _timeline(events: Sequence[TimelineEvent]) -> str:
    if not events:
        return '<p class="empty">no events yet</p>'
    rows = "".join(_event_row(e) for e in events)
    return (
        '<table id="events"><thead><tr><th>When (UTC)</th><th>State</th><th>What</th>'
        f"<th>Reason</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _event_row(e: TimelineEvent) -> str:
    reason = ""
    if e.event_id:
        reason = f"<code>{_e(e.event_id)}</code> {_e(plain_reason(e.event_id))}"
    return (
        f'<tr class="{"fail" if e.is_failure else "change"}"><td>{_e(_utc(e.at))}</td>'
        f"<td>{_e(state_name(e.from_state))} &rarr; {_e(state_name(e.to_state))}</td>"
        f"<td>{_e(event_words(e.event))}</td><td>{reason}</td></tr>"
    )


def _utc(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))
