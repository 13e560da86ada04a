"""The budget bisection every floor search shares."""

from edgec.passes.plans.budget_search import STEPS, describe, smallest_budget


def test_the_smallest_budget_that_keeps_the_floor_is_found_in_log_steps():
    calls = []

    def score(budget):
        calls.append(budget)
        return 0.9 + 0.1 * budget                 # meets 0.97 from budget 0.7 on

    budget, trace = smallest_budget(score, 0.97)
    assert budget == 23 / STEPS and 0.9 + 0.1 * budget >= 0.97 > 0.9 + 0.1 * (budget - 1 / STEPS)
    assert len(calls) <= 5 and [b for b, _ in trace] == calls


def test_a_floor_nothing_meets_keeps_everything_and_an_easy_one_the_least():
    assert smallest_budget(lambda b: 0.5, 0.99)[0] == 1.0
    assert smallest_budget(lambda b: 1.0, 0.99)[0] == 1 / STEPS


def test_the_note_lists_every_point():
    text = describe("keep", 0.995, [(0.5, 0.98), (0.75, 0.996)], 0.75)
    assert "0.500→0.9800" in text and "0.750→0.9960" in text and text.endswith("chose 0.750")
