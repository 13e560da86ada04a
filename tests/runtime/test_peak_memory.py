"""runtime.bench's peak memory reader."""


def test_a_childs_peak_memory_is_its_own_not_the_parents_that_forked_it():
    import subprocess
    import sys

    import numpy as np

    ballast = np.ones(300 * 2**20 // 8)           # the parent holds 300 MB, as a long test runner does
    code = "from edgec.runtime.bench import peak_rss_mb; print(peak_rss_mb(children=True))"
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert ballast.sum() > 0 and child < 200, child
