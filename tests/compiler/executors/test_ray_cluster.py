"""The Ray executor on a real local cluster (`ray start --head`, two CPUs)."""

from __future__ import annotations

import os
import signal
import threading

import pytest
import tasks

from edgec.compiler.executors import Shared, Task, open_executor


@pytest.fixture
def cluster(ray_cluster):
    executor = open_executor(f"ray:{ray_cluster}")
    import ray

    ray.cloudpickle.register_pickle_by_value(tasks)      # the workers cannot import the tests folder
    try:
        yield executor
    finally:
        executor.close()


def test_tasks_run_on_the_cluster_workers_and_share_their_inputs(cluster):
    shared = Shared(list(range(1000)))
    runs = cluster.run([Task(f"t{i}", tasks.total, (shared, i)) for i in range(4)])
    assert [r.value for r in runs] == [499500 + i for i in range(4)]
    assert cluster.workers == 2 and all(r.worker.split(":")[1] != str(os.getpid()) for r in runs)


def test_a_task_whose_worker_dies_runs_again(cluster, tmp_path):
    events = []
    runs = cluster.run([Task("dies", tasks.die_once, (str(tmp_path / "marker"), 7))],
                       lambda key, state, detail="": events.append(state))
    assert runs[0].value == 7 and runs[0].attempts == 2 and "WorkerCrashedError" in runs[0].lost[0]
    assert "retrying" in events


def test_a_worker_killed_from_outside_mid_task_is_retried(cluster):
    killed = []

    def kill_first_runner(key, state, detail=""):
        if state == "running" and not killed:
            pid = int(detail.rsplit(":", 1)[1])
            killed.append(pid)
            threading.Timer(0.5, os.kill, (pid, signal.SIGKILL)).start()

    runs = cluster.run([Task("slow", tasks.slow, (3.0, 11))], kill_first_runner)
    assert killed and runs[0].value == 11 and runs[0].attempts == 2


def test_ctrl_c_cancels_the_unfinished_tasks(cluster):
    def interrupt(key, state, detail=""):
        if state == "running":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cluster.run([Task("long", tasks.slow, (60.0, 1))], interrupt)
    runs = cluster.run([Task("next", tasks.square, (5,))])       # the cluster is free again at once
    assert runs[0].value == 25 and runs[0].seconds < 30


def test_tasks_larger_than_any_node_are_refused_at_once(ray_cluster):
    from edgec.compiler.errors import InputError

    with pytest.raises(InputError, match="largest node of the cluster has 2"):
        open_executor(f"ray:{ray_cluster}", task_threads=3)


def test_a_task_that_needs_a_gpu_the_cluster_lacks_is_an_input_error():
    from edgec.compiler.errors import InputError
    from edgec.compiler.executors.ray_cluster import check_fits

    nodes = [{"Alive": True, "Resources": {"CPU": 2.0}}, {"Alive": False, "Resources": {"CPU": 8.0, "GPU": 1.0}}]
    check_fits(nodes, 1, 0)
    with pytest.raises(InputError, match="no node of the Ray cluster has a GPU"):
        check_fits(nodes, 1, 1)
    check_fits(nodes + [{"Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0}}], 2, 1)
    with pytest.raises(InputError, match="--task-threads 4"):
        check_fits(nodes, 4, 0)


def test_train_device_cuda_reserves_a_gpu_per_task_on_ray_only():
    from edgec.compiler.cli.common import checked_train_device, task_gpus

    assert task_gpus("ray", "cuda") == 1.0 and task_gpus("ray", "auto") == 0.0 and task_gpus("local", "cuda") == 0.0
    assert checked_train_device("cuda", "ray:127.0.0.1:6379") == "cuda"      # the cluster's GPUs are checked there
