"""The pure lease rules (verifier_lite/leases.py): shares cover the fleet, plans converge,
the stop time is before the expiry, and bad lease times are refused by the config; the
annotated default configuration (packaging/config/verifier.toml) says the defaults."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from verifier_lite.config import VerifierConfig, load_config
from verifier_lite.errors import ConfigError
from verifier_lite.leases import LeaseTimes, fair_share, plan_round, stop_polling_at


@given(st.integers(0, 10_000), st.integers(1, 64))
def test_the_shares_cover_every_agent_and_differ_by_little(agents: int, live: int) -> None:
    share = fair_share(agents, live)
    assert share * live >= agents  # every agent can have a holder
    assert (share - 1) * live < agents or agents == 0  # and no share is larger than needed


def test_no_live_verifier_counts_as_one() -> None:
    assert fair_share(5, 0) == 5
    with pytest.raises(ValueError, match="negative"):
        fair_share(-1, 2)


@given(st.sets(st.text(min_size=1, max_size=4), max_size=30), st.integers(0, 40))
def test_a_plan_reaches_the_share_in_one_round(held: set[str], share: int) -> None:
    plan = plan_round(held, share)
    assert not (plan.release and plan.take)
    assert set(plan.release) <= held
    assert len(held) - len(plan.release) + plan.take == share
    assert plan_round(held, share) == plan  # the same held set gives the same choice


@given(st.lists(st.integers(0, 50), min_size=1, max_size=6), st.integers(1, 6))
def test_rounds_converge_to_fair_holdings(start: list[int], extra: int) -> None:
    """Simulated rounds over a lease table: each verifier in turn renews, releases its
    surplus and takes free leases; after a few rounds every agent is held, none twice, and
    nobody holds more than the share."""
    verifiers = len(start) + extra  # some join with nothing
    agents = [f"a{i:03}" for i in range(sum(start) + 3)]
    holder: dict[str, int] = {}
    it = iter(agents)
    for v, count in enumerate(start):
        for _ in range(count):
            holder[next(it)] = v
    share = fair_share(len(agents), verifiers)
    for _ in range(4):
        for v in range(verifiers):
            plan = plan_round({a for a, h in holder.items() if h == v}, share)
            for a in plan.release:
                del holder[a]
            free = [a for a in agents if a not in holder][: plan.take]
            holder.update(dict.fromkeys(free, v))
    assert set(holder) == set(agents)
    counts = [sum(1 for h in holder.values() if h == v) for v in range(verifiers)]
    assert max(counts) <= share


@given(st.floats(0.1, 100.0), st.floats(0.01, 50.0), st.floats(0.01, 50.0), st.floats(0.0, 1e6))
def test_polling_stops_before_the_lease_can_expire(
    duration: float, renew: float, margin: float, sent: float
) -> None:
    times = LeaseTimes(duration, renew, margin)
    if times.problem() is not None:
        return
    assert stop_polling_at(sent, times) < sent + duration  # the expiry is at or after this
    assert stop_polling_at(sent, times) > sent + renew  # the next renewal is due first
    assert times.takeover_bound == duration + renew


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"lease_seconds": -1.0}, "lease_seconds"),
        ({"lease_renew_seconds": 0.0}, "lease_renew_seconds"),
        ({"lease_margin_seconds": 0.0}, "lease_margin_seconds"),
        ({"lease_seconds": 12.0}, "lease_seconds"),  # 10 + 5 >= 12
    ],
)
def test_unworkable_lease_times_are_config_errors(changes: dict[str, float], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        VerifierConfig(**changes)  # type: ignore[arg-type]
    assert caught.value.key == key


def test_leases_are_for_postgresql_only() -> None:
    assert not VerifierConfig().shares_fleet  # SQLite: one verifier, as before
    assert VerifierConfig(database_url="postgresql://u@db/cv").shares_fleet
    assert not VerifierConfig(database_url="postgresql://u@db/cv", lease_seconds=0).shares_fleet
    assert VerifierConfig(lease_seconds=0, lease_renew_seconds=0).lease_seconds == 0


PACKAGED = Path(__file__).resolve().parents[2] / "packaging" / "config" / "verifier.toml"


def test_the_annotated_default_config_is_the_defaults() -> None:
    """packaging/config/verifier.toml lists every option with its built-in default."""
    assert load_config(PACKAGED, environ={}) == VerifierConfig()
    listed = {
        line.split("=", 1)[0].strip()
        for line in PACKAGED.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert listed == {f.name for f in fields(VerifierConfig)}
