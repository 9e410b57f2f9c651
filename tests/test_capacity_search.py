"""The capacity search against simulated systems whose limit is known: the limit is bracketed within the declared
precision, the step budget and the ceiling are respected, and the search says how it ended."""

from __future__ import annotations

import numpy as np
import pytest

from foundation.config import ConfigError
from offpath.capacity_search import (
    BELOW,
    BUDGET,
    CEILING,
    DECIDED,
    FOUND,
    STOPPED,
    Search,
    SearchSettings,
    Step,
    StopSearch,
    drive,
    narrow_until_decided,
    phase_name,
    ratios_decided,
    run_search,
)

pytestmark = pytest.mark.fast

SEED = SearchSettings(start_per_s=15, step_per_s=15, max_per_s=360, step_duration_s=12, refine_steps=5,
                      ceiling_per_s=1440)
CROSSOVER = SearchSettings(start_per_s=8, step_factor=1.6, max_per_s=135, step_duration_s=6, refine_steps=5,
                           ceiling_per_s=540)


def system(limit_per_s: float):
    """A system that holds every rate up to its limit and breaks above it; what it was asked, in order."""
    asked: list[Step] = []

    def probe(step: Step) -> bool:
        asked.append(step)
        return step.rate_per_s <= limit_per_s

    return probe, asked


@pytest.mark.parametrize("settings", [SEED, CROSSOVER], ids=["arithmetic", "geometric"])
@pytest.mark.parametrize("limit", [*np.random.default_rng(25).uniform(0.5, 1400, 40).round(2), 37.0, 230.0])
def test_a_limit_is_bracketed_within_five_percent(settings, limit):
    probe, asked = system(limit)
    result = run_search(probe, settings)
    if result.outcome == CEILING:
        # It held at the ceiling, or at a rate within the precision of it (a step closer would tell nothing).
        assert limit >= result.held_per_s >= settings.ceiling / (1 + 2 * settings.precision_pct / 100)
        return
    if result.outcome == BELOW:
        assert result.broke_per_s is not None and limit < result.broke_per_s
        assert sum(s.stage == "down" for s in asked) == settings.refine_steps
        return
    narrowing = sum(s.stage in ("refine", "down") for s in asked)
    assert narrowing <= settings.refine_steps
    assert result.held_per_s <= limit < result.broke_per_s
    if result.outcome == BUDGET:  # only where going down to a rate that holds took most of the budget
        assert narrowing == settings.refine_steps and any(s.stage == "down" for s in asked), result.text()
        return
    assert result.outcome == FOUND, result.text()
    assert result.achieved_pct <= 5.0
    assert len({s.rate_per_s for s in asked}) == len(asked)  # no rate offered twice


def test_the_seed_search_refines_queued_from_a_step_of_fifteen():
    """The fresh-clone seed run left queued in [30, 45), ±25%; three bisections bring it within 5%."""
    probe, asked = system(35.0)
    result = run_search(probe, SEED)
    assert [s.rate_per_s for s in asked] == [15, 30, 45, 37.5, 33.8, 35.6]
    assert (result.held_per_s, result.broke_per_s) == (33.8, 35.6) and result.outcome == FOUND
    assert [s.stage for s in asked] == ["step"] * 3 + ["refine"] * 3


def test_a_narrow_step_needs_no_refinement():
    probe, asked = system(230.0)
    result = run_search(probe, SEED)
    assert (result.held_per_s, result.broke_per_s) == (225, 240) and result.outcome == FOUND
    assert all(s.stage == "step" for s in asked)


def test_the_step_budget_is_respected_and_said():
    settings = SEED.model_copy(update={"refine_steps": 1})
    probe, asked = system(41.0)
    result = run_search(probe, settings)
    assert result.outcome == BUDGET and sum(s.stage == "refine" for s in asked) == 1
    assert (result.held_per_s, result.broke_per_s) == (37.5, 45)
    assert "step budget was spent before ±5%" in result.text()


def test_past_its_maximum_the_search_goes_on_until_the_limit_is_found():
    probe, asked = system(1000.0)
    result = run_search(probe, SEED)  # max 360/s, ceiling 1440/s
    assert result.outcome == FOUND and result.held_per_s <= 1000 < result.broke_per_s
    beyond = [s.rate_per_s for s in asked if s.stage == "beyond"]
    assert beyond == [720, 1440] and max(s.rate_per_s for s in asked) <= SEED.ceiling


def test_the_ceiling_is_respected_and_the_limit_said_not_found():
    settings = SEED.model_copy(update={"ceiling_per_s": 500.0})
    probe, asked = system(10_000.0)
    result = run_search(probe, settings)
    assert result.outcome == CEILING and result.held_per_s == 500 and result.broke_per_s is None
    assert max(s.rate_per_s for s in asked) == 500
    assert "not found" in result.text()


def test_a_ceiling_at_the_maximum_stops_there():
    settings = CROSSOVER.model_copy(update={"ceiling_per_s": 135.0})
    probe, asked = system(10_000.0)
    result = run_search(probe, settings)
    # 134/s is the last geometric step; 135/s would not tell the limit apart from it.
    assert result.outcome == CEILING and result.held_per_s == 134 and asked[-1].rate_per_s == 134


def test_a_limit_below_the_first_rate_is_found_going_down():
    probe, asked = system(6.0)
    result = run_search(probe, SEED)
    assert [s.rate_per_s for s in asked][:3] == [15, 7.5, 3.75]
    assert result.outcome == FOUND and result.held_per_s <= 6 < result.broke_per_s


def test_narrowing_probes_hold_ten_values_beyond_p99():
    probe, asked = system(41.0)
    run_search(probe, SEED)
    for step in asked:
        values_beyond = step.rate_per_s * step.duration_s * 0.01
        if step.stage == "refine":
            assert values_beyond >= 10
        else:
            assert step.duration_s == SEED.step_duration_s


def test_a_probe_can_stop_the_search_with_its_reason():
    def probe(step: Step) -> bool:
        if step.rate_per_s > 40:
            raise StopSearch("the backlog did not drain")
        return True

    result = run_search(probe, SEED)
    assert result.outcome == STOPPED and result.held_per_s == 30 and result.broke_per_s is None
    assert result.text() == "search stopped (the backlog did not drain): held up to 30/s, limit not found"


def test_a_noisy_system_still_gets_an_ordered_bracket():
    rng = np.random.default_rng(3)

    def probe(step: Step) -> bool:  # holds with a probability falling from 1 to 0 across 90..110/s
        return bool(rng.random() < np.clip((110 - step.rate_per_s) / 20, 0, 1))

    for _ in range(50):
        result = run_search(probe, SEED)
        assert result.held_per_s is None or result.broke_per_s is None or result.held_per_s < result.broke_per_s


def test_every_probe_has_a_readable_unique_cell_name():
    assert phase_name(15.0) == "capacity-0015_0" and phase_name(37.5) == "capacity-0037_5"
    assert phase_name(8.19) == "capacity-0008_19" and phase_name(1440.0) == "capacity-1440_0"
    probe, asked = system(7.3)
    run_search(probe, CROSSOVER)
    names = [phase_name(s.rate_per_s) for s in asked]
    assert len(set(names)) == len(names)


def test_the_most_probes_bound_the_search():
    for limit in (1.0, 41.0, 1000.0, 10_000.0):
        probe, asked = system(limit)
        run_search(probe, SEED)
        assert len(asked) <= SEED.most_probes()


@pytest.mark.parametrize(("table", "line"), [
    ({"start_per_s": 15, "max_per_s": 360, "step_duration_s": 12},
     "x [capacity]: value {'start_per_s': 15, 'max_per_s': 360, 'step_duration_s': 12}; allowed: exactly one of "
     "step_per_s (add a rate each step) or step_factor (multiply the rate each step)"),
    ({"start_per_s": 15, "step_per_s": 15, "max_per_s": 360, "step_duration_s": 12, "precision_pct": 0},
     "x [capacity]: key 'precision_pct' has value 0; allowed: a percentage > 0 and < 100"),
    ({"start_per_s": 15, "step_per_s": 15, "max_per_s": 360, "step_duration_s": 12, "ceiling_per_s": 100},
     "; allowed: ceiling_per_s (100) >= max_per_s (360)"),
])
def test_settings_are_refused_in_one_line(table, line):
    with pytest.raises(ConfigError) as caught:
        SearchSettings.of(table, "x")
    assert str(caught.value).startswith("x [capacity]: ") and str(caught.value).endswith(line)


def test_an_experiment_that_declares_neither_budget_nor_ceiling_searches_as_declared_and_says_so():
    plain = SearchSettings(start_per_s=15, step_per_s=15, max_per_s=60, step_duration_s=12)
    probe, asked = system(41.0)
    result = run_search(probe, plain)
    assert [s.rate_per_s for s in asked] == [15, 30, 45] and result.outcome == BUDGET
    assert (result.held_per_s, result.broke_per_s) == (30, 45)
    probe, asked = system(1000.0)
    result = run_search(probe, plain)
    assert [s.rate_per_s for s in asked] == [15, 30, 45, 60] and result.outcome == CEILING
    assert "its limit was not found" in result.text()


# -- narrow = "until-decided": narrowing probes only while a capacity ratio is undecided -------------------------------

UNTIL_DECIDED = CROSSOVER.model_copy(update={"narrow": "until-decided", "refine_steps": 3, "ceiling_per_s": None})


def searched_until_decided(limits: dict[str, float], margin: float = 0.10) -> tuple[dict[str, Search], dict[str, list]]:
    """Each design's search as the runner runs them: one after the other, each paused where it would narrow, then
    narrowed while the capacity ratio against the first is undecided. What each design was asked, in order."""
    names = list(limits)
    searches: dict[str, Search] = {}
    asked: dict[str, list[Step]] = {}
    systems = {name: system(limit) for name, limit in limits.items()}
    for name in names:
        probe, asked[name] = systems[name]
        searches[name] = Search(UNTIL_DECIDED, paused=True, decided=lambda: ratios_decided(searches, names, margin))
        drive(searches[name], probe)

    def narrow(name: str) -> None:
        searches[name].paused = False
        drive(searches[name], systems[name][0])

    for name in narrow_until_decided(searches, lambda: ratios_decided(searches, names, margin), narrow):
        assert searches[name].outcome == DECIDED
    return searches, asked


def test_limits_far_apart_are_decided_without_a_narrowing_probe():
    # 100/s against 40/s: the x1.6 steps bracket them in [83.9, 134) and [32.8, 52.4) — decided as they stand.
    searches, asked = searched_until_decided({"inline": 100.0, "queued": 40.0})
    assert all(s.stage == "step" for steps in asked.values() for s in steps)
    assert {name: search.outcome for name, search in searches.items()} == {"inline": DECIDED, "queued": DECIDED}
    assert all(search.held <= limit < search.broke
               for search, limit in zip(searches.values(), (100.0, 40.0), strict=True))


def test_close_limits_are_narrowed_until_the_ratio_is_decided():
    # 40/s against 46/s share the bracket [32.8, 52.4): only narrowing can tell them apart.
    searches, asked = searched_until_decided({"inline": 40.0, "queued": 46.0})
    narrowing = {name: sum(s.stage == "refine" for s in steps) for name, steps in asked.items()}
    assert sum(narrowing.values()) > 0
    assert ratios_decided(searches, ["inline", "queued"], 0.10)
    for name, limit in (("inline", 40.0), ("queued", 46.0)):
        assert searches[name].held <= limit < searches[name].broke
        assert searches[name].outcome in (DECIDED, FOUND, BUDGET)


def test_a_ratio_narrowing_cannot_decide_spends_the_budget_and_stays_undecided():
    # Equal limits against a ±1% margin: within ±3% brackets the ratio still straddles 1 and the margin's edges — every
    # probe is spent on both designs, and the searches say how far they got, not "decided".
    searches, asked = searched_until_decided({"inline": 40.0, "queued": 40.0}, margin=0.01)
    assert all(sum(s.stage == "refine" for s in steps) >= 1 for steps in asked.values())
    assert all(search.outcome in (FOUND, BUDGET) for search in searches.values())
    assert not ratios_decided(searches, ["inline", "queued"], 0.01)


def test_a_paused_search_probes_nothing_until_it_is_unpaused():
    probe, asked = system(40.0)
    search = Search(UNTIL_DECIDED, paused=True)
    drive(search, probe)
    assert search.outcome is None and all(s.stage == "step" for s in asked)
    assert (search.held, search.broke) == (32.8, 52.4) and search.width_pct == pytest.approx(29.9, abs=0.1)
    search.paused = False
    drive(search, probe)
    assert search.outcome == FOUND and search.held <= 40.0 < search.broke
    assert sum(s.stage == "refine" for s in asked) == 3


def test_the_decided_outcome_is_said_and_recorded():
    searches, _ = searched_until_decided({"inline": 100.0, "queued": 40.0})
    result = searches["queued"].result()
    assert result.record().outcome == "decided"
    assert "narrowed no further" in result.text() and "[32.8, 52.4)/s" in result.text()


def test_narrow_is_one_of_two_words():
    with pytest.raises(ConfigError) as refused:
        SearchSettings.of({**UNTIL_DECIDED.model_dump(), "narrow": "sometimes"}, "crossover.toml")
    assert "narrow" in str(refused.value) and "\n" not in str(refused.value)
