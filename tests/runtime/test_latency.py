import time

import pytest

from edgec.runtime.latency import LatencyStats, measure_interleaved


def test_interleaved_measurement_keeps_runners_apart():
    calls = []
    samples = measure_interleaved([lambda: calls.append("a"), lambda: (calls.append("b"), time.sleep(0.002))],
                                  warmup=2, runs=5)
    assert calls.count("a") == calls.count("b") == 7
    assert len(samples[0]) == len(samples[1]) == 5
    assert min(samples[1]) > max(samples[0])


def test_time_budget_stops_early_but_keeps_three_runs():
    samples = measure_interleaved([lambda: time.sleep(0.01)], warmup=0, runs=1000, max_seconds=0.0)
    assert len(samples[0]) == 3


def test_stats_from_samples():
    stats = LatencyStats.from_samples([0.001, 0.002, 0.003, 0.004])
    assert stats.runs == 4 and stats.min_ms == pytest.approx(1.0) and stats.max_ms == pytest.approx(4.0)
    assert stats.p50_ms == pytest.approx(2.5) and stats.mean_ms == pytest.approx(2.5)


def test_a_fast_model_is_timed_for_a_minimum_time_not_only_a_number_of_runs():
    quick = [lambda: None, lambda: None]
    assert [len(s) for s in measure_interleaved(quick, warmup=0, runs=5)] == [5, 5]
    long = measure_interleaved(quick, warmup=0, runs=5, min_seconds=0.2)   # 5 empty calls take far less, even busy
    assert len(long[0]) == len(long[1]) > 5
