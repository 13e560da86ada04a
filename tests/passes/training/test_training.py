"""The one training loop: its schedule, budgets, hooks, early stopping and best-weights keeping."""

import pytest

from edgec.passes.training.loop import BestWeights, Schedule, adamw, run_loop, sampled_rows

torch = pytest.importorskip("torch")


def test_the_learning_rate_warms_up_linearly_then_follows_a_cosine_to_zero():
    schedule = Schedule(warmup=0.1)
    assert schedule.factor(0.0) == 0.0
    assert schedule.factor(0.05) == pytest.approx(0.5)
    assert schedule.factor(0.1) == pytest.approx(1.0)
    assert schedule.factor(0.55) == pytest.approx(0.5)
    assert schedule.factor(1.0) == pytest.approx(0.0, abs=1e-12)
    assert Schedule().factor(0.0) == pytest.approx(1.0)          # no warm-up: start at the peak


def test_a_floor_keeps_the_end_of_the_cosine_above_zero():
    assert Schedule(floor=0.01).factor(1.0) == pytest.approx(0.01)
    assert Schedule(floor=0.01).factor(0.0) == pytest.approx(1.0)


def _problem():
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    y = x @ torch.randn(8, 3)
    w = torch.nn.Parameter(torch.zeros(8, 3))
    return x, y, w


def test_a_step_budget_runs_that_many_steps_and_the_fit_converges():
    x, y, w = _problem()
    seen_lr = []
    optimizer = adamw([{"params": [w], "peak": 0.05}])
    generator = torch.Generator().manual_seed(0)

    def step_loss(step):
        seen_lr.append(optimizer.param_groups[0]["lr"])
        xb, yb = sampled_rows(x, y, 64, generator)
        return torch.mean((xb @ w - yb) ** 2)

    result = run_loop(optimizer, step_loss, steps=300)
    assert result.steps == 300 and not result.stopped_early
    assert seen_lr[0] == pytest.approx(0.05) and seen_lr[-1] < 0.001     # the cosine reached its end
    assert torch.mean((x @ w - y) ** 2).item() < 1e-2 * torch.mean(y ** 2).item()


def test_hooks_run_around_every_step_and_data_running_out_ends_training():
    x, y, w = _problem()
    calls = []
    batches = iter(range(7))

    def step_loss(step):
        next(batches)
        return torch.mean((x @ w - y) ** 2)

    result = run_loop(adamw([{"params": [w], "peak": 0.01}]), step_loss, steps=100,
                      before_step=lambda s: calls.append(("before", s)), after_step=lambda s: calls.append(("after", s)))
    assert result.steps == 7
    assert calls[:4] == [("before", 0), ("after", 0), ("before", 1), ("after", 1)]


def test_evaluation_stops_early_and_the_best_weights_come_back():
    x, y, w = _problem()
    best = BestWeights({"w": w}, score=-1.0)
    scores = iter([0.5, 0.9, 0.8, 0.7, 0.6])
    snapshot = {}

    def evaluate(step):
        score = next(scores)
        best.offer(score)
        if score == 0.9:
            snapshot["w"] = w.detach().clone()
        return best.stale >= 2

    result = run_loop(adamw([{"params": [w], "peak": 0.01}]), lambda s: torch.mean((x @ w - y) ** 2),
                      steps=1000, evaluate=evaluate, eval_every=3)
    assert result.stopped_early and result.steps == 12          # evaluations at 3, 6, 9, 12: two stale after 0.9
    best.restore()
    assert best.score == 0.9 and torch.equal(w.detach(), snapshot["w"])


def test_a_loop_needs_exactly_one_budget():
    x, y, w = _problem()
    with pytest.raises(ValueError, match="budget"):
        run_loop(adamw([{"params": [w], "peak": 0.01}]), lambda s: torch.mean(w), steps=3, seconds=1.0)
