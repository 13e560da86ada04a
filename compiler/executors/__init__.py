"""Where a compile's independent tasks run: the goal search's candidates and compile-many's model × target pairs.

`--executor local` (default): in this process, or a pool of `--jobs N` processes; `--executor ray`: the Ray
cluster on this machine (`ray start --head`), else a new local one; `--executor ray://HOST:PORT`: an existing
cluster. Whatever runs the tasks, the results are the same: tasks get the same inputs and seeds, and latency is
measured afterwards on the machine the target names (this one), never on a worker.
"""

from __future__ import annotations

from edgec.compiler.errors import InputError
from edgec.compiler.executors.base import Events, Executor, Shared, Task, TaskRun


def open_executor(spec: str = "local", jobs: int = 1, task_threads: int = 0, task_gpus: float = 0.0) -> Executor:
    """`task_threads`: on Ray, the CPUs each task reserves (default 1); `task_gpus`: the GPUs (--train-device cuda)."""
    spec = spec.strip()
    if jobs < 1 or task_threads < 0:
        raise InputError(f"--jobs {jobs} / --task-threads {task_threads}: must be ≥ 1")
    if spec == "local":
        from edgec.compiler.executors.local import InProcess, ProcessPool

        return InProcess() if jobs == 1 else ProcessPool(jobs)
    if spec == "ray" or spec.startswith("ray://") or spec.startswith("ray:"):
        from edgec.compiler.executors.ray_cluster import RayCluster

        address = None if spec == "ray" else spec if spec.startswith("ray://") else spec[len("ray:"):]
        return RayCluster(address, cpus_per_task=task_threads or 1, gpus_per_task=task_gpus)
    raise InputError(f"--executor {spec}: expected local, ray, ray://HOST:PORT or ray:HOST:PORT")


__all__ = ["Events", "Executor", "Shared", "Task", "TaskRun", "open_executor"]
