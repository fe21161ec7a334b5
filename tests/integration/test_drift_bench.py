"""bench/drift.py part 5's selection rule: every detector's setting is chosen on the tuning worlds
by F1 under a false-alarm budget, or by the fewest false alarms when no setting keeps to it."""
from __future__ import annotations

import pytest

from bench.drift import FALSE_ALARM_BUDGET, FALSE_ALARM_TARGET, choose


def score(f1: float, false_per_10k: float, median_delay: float | None = 5.0) -> dict:
    return {"f1": f1, "false_per_10k": false_per_10k, "median_delay": median_delay}


def test_the_budget_is_half_the_target() -> None:
    assert FALSE_ALARM_TARGET == 1.0 and FALSE_ALARM_BUDGET == 0.5


def test_the_best_f1_within_the_budget_wins_over_a_louder_better_one() -> None:
    grid = [("loud", score(0.90, 2.2)), ("edge", score(0.88, 0.5)), ("quiet", score(0.87, 0.1)), ("dead", score(0.0, 0.0, None))]
    setting, chosen, within = choose(grid)
    assert (setting, within) == ("edge", True) and chosen["f1"] == 0.88  # at the budget still qualifies
    setting, _, within = choose(grid, budget=0.4)
    assert (setting, within) == ("quiet", True)


def test_equal_f1_within_the_budget_goes_to_the_shorter_delay() -> None:
    grid = [("slow", score(0.8, 0.2, 30.0)), ("fast", score(0.8, 0.4, 4.0)), ("no delay", score(0.8, 0.0, None))]
    assert choose(grid)[0] == "fast"


def test_none_within_the_budget_falls_back_to_the_fewest_false_alarms() -> None:
    grid = [("best f1", score(0.7, 5.0)), ("quietest", score(0.3, 1.5)), ("quietest, better f1", score(0.4, 1.5)),
            ("mid", score(0.6, 3.0))]
    setting, chosen, within = choose(grid)
    assert (setting, within) == ("quietest, better f1", False) and chosen["false_per_10k"] == 1.5


def test_a_bad_grid_or_budget_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="no candidate settings"):
        choose([])
    with pytest.raises(ValueError, match="budget must be >= 0"):
        choose([("a", score(0.5, 0.0))], budget=-1.0)
