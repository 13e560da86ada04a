"""Successive halving over a goal search's candidates: one training budget for the whole search."""

from dataclasses import dataclass

import pytest

from edgec.compiler.goal.driver import Goal
from edgec.compiler.goal.halving import successive_halving, survivor_counts, worth_training


@dataclass
class _Report:
    ok: bool
    ratio: float
    latency: dict

    def __init__(self, ok: bool, ratio: float):
        self.ok, self.ratio, self.latency = ok, ratio, {"ratio_p50": ratio}


@dataclass
class _Result:
    point: dict
    report: _Report
    seconds: float = 0.0


class _FakeTrial:
    """Candidate i has latency ratio RATIOS[i]; its cosine grows with training minutes at rate RATES[i]; each
    compile takes its training minutes plus `overhead_minutes`."""

    def __init__(self, ratios, rates, overhead_minutes=0.0):
        self.goal = Goal("speedup", 1.25)
        self.ratios, self.rates, self.overhead = ratios, rates, overhead_minutes
        self.now = 0.0
        self.calls: list[tuple[int, float]] = []
        self.rounds: list[list[tuple[int, float]]] = []

    def run_round(self, jobs):
        self.rounds.append(list(jobs))
        return [self.run(i, CANDIDATES[i], minutes) for i, minutes in jobs]

    def run(self, index, candidate, minutes):
        self.calls.append((index, minutes))
        self.now += (minutes + self.overhead) * 60
        cosine = min(1.0, 0.95 + self.rates[index] * minutes)
        return _Result({"pipeline": candidate[0], "cosine": cosine}, _Report(cosine >= 0.99, self.ratios[index]),
                       (minutes + self.overhead) * 60)


CANDIDATES = [("cleanup", ["cleanup"], {}), ("a", ["prune"], {}), ("b", ["prune"], {}), ("c", ["heads", "prune"], {}),
              ("d", ["prune", "quantize"], {})]


@pytest.mark.parametrize("survivors,counts", [(1, [1]), (2, [2, 1]), (3, [3, 2, 1]), (5, [5, 3, 2, 1])])
def test_survivors_halve_until_one_is_left(survivors, counts):
    assert survivor_counts(survivors) == counts


def test_every_compressing_candidate_is_tried_then_the_promising_half_trains_longer():
    trial = _FakeTrial(ratios=[1.0, 0.9, 0.7, 0.6, 0.5], rates=[0, 0.001, 0.004, 0.003, 0.0001])
    results, notes = successive_halving(trial.run_round, CANDIDATES, 30.0)
    assert trial.calls[0] == (0, 0.0)                       # nothing to train: once, untrained
    first = trial.calls[1:5]
    assert sorted(i for i, _ in first) == [1, 2, 3, 4] and len({m for _, m in first}) == 1
    later = trial.calls[5:]
    assert later and all(m > first[0][1] for _, m in later)  # survivors get longer runs
    assert {i for i, _ in later} <= {2, 3, 4}                 # 'a' is farthest from the gate: dropped first
    assert sum(m for _, m in trial.calls) == pytest.approx(30.0)
    assert [r.point["pipeline"] for r in results] == ["cleanup", "a", "b", "c", "d"]
    assert notes[0].startswith("training round 1: 4 candidate(s)")


def test_compile_overheads_are_paid_from_the_budget():
    trial = _FakeTrial(ratios=[1.0, 0.5, 0.5, 0.5, 0.5], rates=[0, 1e-4, 2e-4, 3e-4, 4e-4], overhead_minutes=1.0)
    successive_halving(trial.run_round, CANDIDATES, 20.0)
    assert 15.0 < trial.now / 60 <= 20.0 + 1e-6


def test_candidates_that_pass_early_are_not_trained_again():
    trial = _FakeTrial(ratios=[1.0, 0.7, 0.7, 0.7, 0.7], rates=[0, 1.0, 1.0, 1.0, 1.0])
    successive_halving(trial.run_round, CANDIDATES, 8.0)
    assert len(trial.calls) == 5                              # all pass in round 1: nothing worth more training


def test_worth_training_prefers_those_closest_to_the_gate():
    results = [_Result({"cosine": c}, _Report(False, 0.7)) for c in (0.97, 0.985, 0.96, 0.98)]
    results.append(_Result({"cosine": 0.995}, _Report(True, 0.9)))       # passes already: done
    assert worth_training(results, [10, 11, 12, 13, 14]) == [11, 13, 10]


def test_every_compressing_candidate_runs_even_when_overheads_eat_the_budget():
    trial = _FakeTrial(ratios=[1.0, 0.5, 0.5, 0.5, 0.5], rates=[0, 1e-4, 2e-4, 3e-4, 4e-4], overhead_minutes=2.0)
    successive_halving(trial.run_round, CANDIDATES, 5.0)
    assert sorted(i for i, m in trial.calls if m > 0)[:4] == [1, 2, 3, 4]


def test_survivors_never_train_less_than_the_round_before():
    trial = _FakeTrial(ratios=[1.0, 0.5, 0.5, 0.5, 0.5], rates=[0, 1e-4, 2e-4, 3e-4, 4e-4], overhead_minutes=1.5)
    successive_halving(trial.run_round, CANDIDATES, 30.0)
    minutes = [m for _, m in trial.calls if m > 0]
    assert minutes == sorted(minutes)


def test_a_longer_run_that_does_worse_does_not_replace_the_better_one():
    class Unlucky(_FakeTrial):
        def run(self, index, candidate, minutes):
            result = super().run(index, candidate, minutes)
            if len([c for c in self.calls if c[0] == index]) > 1:      # the second run of a candidate collapses
                result.point["cosine"] = 0.5
            return result

    trial = Unlucky(ratios=[1.0, 0.5, 0.5, 0.5, 0.5], rates=[0, 1e-4, 2e-4, 3e-4, 4e-4])
    results, _ = successive_halving(trial.run_round, CANDIDATES, 30.0)
    assert min(r.point["cosine"] for r in results[1:]) > 0.9


def test_a_round_runs_its_candidates_together_and_the_untrained_ones_join_round_one():
    trial = _FakeTrial(ratios=[1.0, 0.9, 0.7, 0.6, 0.5], rates=[0, 0.001, 0.004, 0.003, 0.0001])
    successive_halving(trial.run_round, CANDIDATES, 30.0)
    assert [i for i, _ in trial.rounds[0]] == [0, 1, 2, 3, 4]
    assert all(len(r) <= 2 for r in trial.rounds[1:]) and len(trial.rounds) >= 2


def test_a_budget_of_steps_is_spent_in_whole_steps_without_a_clock():
    trial = _FakeTrial(ratios=[1.0, 0.9, 0.7, 0.6, 0.5], rates=[0, 1e-5, 4e-5, 3e-5, 1e-6], overhead_minutes=3.0)
    _, notes = successive_halving(trial.run_round, CANDIDATES, 400, steps=True)
    given = [m for _, m in trial.calls if m > 0]
    assert all(m == int(m) for m in given) and sum(given) <= 400 and sum(given) > 300
    assert given[:4] == [33.0] * 4 and notes[0] == "training round 1: 4 candidate(s) × 33 steps"
    again = _FakeTrial(ratios=[1.0, 0.9, 0.7, 0.6, 0.5], rates=[0, 1e-5, 4e-5, 3e-5, 1e-6], overhead_minutes=9.0)
    successive_halving(again.run_round, CANDIDATES, 400, steps=True)
    assert again.calls == trial.calls                        # compile overheads change nothing
