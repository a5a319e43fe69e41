"""The bounded checkpoint index, on its own (no files)."""

from __future__ import annotations

import pytest

from edge_agent.ima import Checkpoints


def test_nearest_is_the_last_checkpoint_at_or_before_the_entry() -> None:
    cps = Checkpoints(spacing=10)
    for entry in range(1, 50):
        if cps.wants(entry):
            cps.add(entry, entry * 100)
    assert len(cps) == 5
    table = {0: (0, 0), 9: (0, 0), 10: (10, 1000), 39: (30, 3000), 40: (40, 4000), 99: (40, 4000)}
    for entry, expected in table.items():
        assert cps.nearest(entry) == expected


def test_full_index_doubles_its_spacing_and_stays_bounded() -> None:
    cps = Checkpoints(spacing=2, max_checkpoints=8)
    for entry in range(1, 10_000):
        if cps.wants(entry):
            cps.add(entry, entry)
        assert len(cps) <= 8
    assert cps.spacing > 2
    entry, offset = cps.nearest(9_999)
    assert entry % cps.spacing == 0
    assert 9_999 - entry < cps.spacing
    assert offset == entry


def test_reset_forgets_everything_but_entry_zero() -> None:
    cps = Checkpoints(spacing=1, max_checkpoints=2)
    cps.add(1, 10)
    cps.add(2, 20)
    cps.reset()
    assert (len(cps), cps.spacing, cps.nearest(5)) == (1, 1, (0, 0))


def test_out_of_order_and_bad_settings_are_refused() -> None:
    cps = Checkpoints(spacing=1)
    cps.add(1, 10)
    with pytest.raises(ValueError, match="not after"):
        cps.add(1, 20)
    with pytest.raises(ValueError, match="spacing"):
        Checkpoints(spacing=0)
    with pytest.raises(ValueError, match="at least 2"):
        Checkpoints(max_checkpoints=1)
