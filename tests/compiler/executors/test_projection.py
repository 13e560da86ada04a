"""Projecting a search onto N workers from its recorded task times."""

import pytest

from edgec.compiler.executors.projection import makespan, projected_wall


@pytest.mark.parametrize("seconds, workers, expected", [([3, 3, 2, 2, 2], 2, 7), ([5, 1, 1], 4, 5), ([1, 2, 3], 1, 6)])
def test_makespan_puts_the_longest_task_first_on_the_least_loaded_worker(seconds, workers, expected):
    # LPT: 3,3 | +2,+2 | +2 → 7 (the optimum, 3+3 | 2+2+2, is 6: LPT is within 4/3 of it)
    assert makespan(seconds, workers) == expected


def test_rounds_are_barriers_and_the_host_time_is_added():
    tasks = [{"round": 1, "seconds": 4}, {"round": 1, "seconds": 4}, {"round": 2, "seconds": 10}]
    assert projected_wall(tasks, 1.5, 1) == 19.5
    assert projected_wall(tasks, 1.5, 2) == 15.5          # round 2's one task cannot be split
