"""Tasks on a Ray cluster (`--executor ray`: the cluster `ray start` runs on this machine, else a new local one;
`--executor ray://HOST:PORT`: attach to a running cluster through Ray Client).

A cluster edgec starts listens on 127.0.0.1 only (LOOPBACK_SETTING); so does the driver when it attaches to a
cluster on this machine's loopback. Token authentication is Ray's: on when a token exists (`RAY_AUTH_TOKEN`,
`~/.ray/auth_token`), which a new local cluster writes.

Every `Shared` argument is put in Ray's object store once (for every run of the executor: a goal search's rounds
share it) and read from there by every task: no shared filesystem is assumed. Tasks are submitted without Ray's
own retries, so that a task whose worker dies is seen here, submitted again and recorded (`TaskRun.lost`). Workers announce when a task starts on a small
queue actor, which drives the progress display. KeyboardInterrupt cancels every unfinished task.
"""

from __future__ import annotations

import logging
import os
import socket
import warnings
from pathlib import Path
from typing import Any

from edgec.compiler.errors import InputError
from edgec.compiler.executors.base import Events, Shared, Task, TaskRun, call, quiet, worker_name

MAX_ATTEMPTS = 3
POLL_SECONDS = 0.5


def _announce_and_call(queue, key: str, fn, *args) -> tuple[Any, float, str]:
    if queue is not None:
        try:
            queue.put_nowait((key, worker_name()))
        except Exception:  # noqa: BLE001 - progress is best effort
            pass
    return call(fn, args)


def _warm_up() -> str:
    """A fresh worker imports what a compile task needs (seconds), so that the first real task does not."""
    import importlib

    importlib.import_module("edgec.compiler.tasks.compile")
    for optional in ("torch", "transformers"):
        try:
            importlib.import_module(optional)
        except ImportError:
            pass
    return worker_name()


def check_fits(nodes: list[dict], cpus: float, gpus: float) -> None:
    """An input error where no live node of the cluster has the CPUs (and GPUs) one task reserves."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive")]
    largest = max((r.get("CPU", 0) for r in alive), default=0)
    if cpus > largest:
        raise InputError(f"--task-threads {cpus:g}: each task would reserve {cpus:g} CPUs, and the largest node of the "
                         f"cluster has {largest:g}: no task could ever start")
    if gpus > 0 and not any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in alive):
        raise InputError(f"--train-device cuda: no node of the Ray cluster has a GPU (and {cpus:g} CPUs) for a task; "
                         "use --train-device cpu or auto")


class RayCluster:
    name = "ray"
    same_machine = False       # even on this machine: tasks read their inputs from the object store

    def __init__(self, address: str | None = None, cpus_per_task: float = 1.0, gpus_per_task: float = 0.0):
        """`gpus_per_task` > 0 (--train-device cuda): each task reserves that many GPUs (Ray hides the GPUs from a
        task that reserves none, so training there would run on the CPU)."""
        _token_auth_if_available()          # read by Ray when it is imported
        local = _on_loopback(address)
        if local:
            os.environ.setdefault(LOOPBACK_SETTING, "0")
        try:
            import ray
        except ImportError:
            raise InputError("--executor ray needs Ray: pip install 'edgec[ray]'") from None
        self._ray = ray
        self._owns = not ray.is_initialized()
        if self._owns:
            _check_reachable(address)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")        # Ray Client warns before it raises
                    ray.init(address=address, include_dashboard=False, log_to_driver=False,
                             logging_level=logging.ERROR, configure_logging=False,
                             _node_ip_address=LOOPBACK if address is None else None)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise InputError(f"--executor: cannot reach the Ray cluster at {address or 'this machine'} "
                                 f"({str(exc).splitlines()[0][:160]})") from None
        try:
            check_fits(ray.nodes(), cpus_per_task, gpus_per_task)
        except InputError:
            self.close()
            raise
        resources = ray.cluster_resources()
        self.workers = max(1, int(resources.get("CPU", 1) // cpus_per_task))
        if gpus_per_task > 0:
            self.workers = max(1, min(self.workers, int(resources.get("GPU", 0) // gpus_per_task)))
        self._remote = ray.remote(_announce_and_call).options(num_cpus=cpus_per_task, num_gpus=gpus_per_task,
                                                              max_retries=0)
        # one warm-up per worker, not awaited: the imports run while the host loads the model and packs the data
        self._stored_refs: dict[int, tuple[Shared, Any]] = {}
        self._warming = [ray.remote(_warm_up).options(num_cpus=cpus_per_task).remote() for _ in range(self.workers)]

    def run(self, tasks: list[Task], events: Events | None = None) -> list[TaskRun]:
        ray = self._ray
        events = events or quiet
        queue = self._queue()

        def submit(task: Task):
            args = [self._stored(a) if isinstance(a, Shared) else a for a in task.args]
            return self._remote.remote(queue, task.key, task.fn, *args)

        pending = {submit(t): t for t in tasks}
        attempts: dict[str, int] = {t.key: 1 for t in tasks}
        lost: dict[str, list[str]] = {t.key: [] for t in tasks}
        done: dict[str, TaskRun] = {}
        for t in tasks:
            events(t.key, "queued", "")
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
                _drain(queue, events)
                for ref in ready:
                    task = pending.pop(ref)
                    try:
                        value, seconds, worker = ray.get(ref)
                    except _lost_worker_errors(ray) as exc:
                        attempts[task.key] += 1
                        lost[task.key].append(f"{type(exc).__name__}: the worker died")
                        if attempts[task.key] > MAX_ATTEMPTS:
                            raise RuntimeError(f"task {task.key}: its worker died {MAX_ATTEMPTS} times") from None
                        events(task.key, "retrying", type(exc).__name__)
                        pending[submit(task)] = task
                        continue
                    done[task.key] = TaskRun(task.key, value, seconds, worker, attempts[task.key], lost[task.key])
                    events(task.key, "done", f"{seconds:.0f} s")
        except BaseException:
            for ref in pending:         # not force: Ray 2.60 can abort the driver when a force-killed task completes
                ray.cancel(ref)
            raise
        finally:
            _drain(queue, events)
            if queue is not None:
                queue.shutdown(force=True)
        return [done[t.key] for t in tasks]

    def _stored(self, shared: Shared):
        """The object store's copy of a shared input: put once for every run of this executor (a goal search's
        rounds all read the same model and data)."""
        kept = self._stored_refs.get(id(shared))
        if kept is None or kept[0] is not shared:
            kept = self._stored_refs[id(shared)] = (shared, self._ray.put(shared.value))
        return kept[1]

    def _queue(self):
        try:
            from ray.util.queue import Queue

            return Queue(actor_options={"num_cpus": 0})
        except Exception:  # noqa: BLE001 - no progress display is no reason to fail
            return None

    def close(self) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()


# Ray replaces a node address of 127.0.0.1 with the machine's network address, and its servers (GCS, raylet,
# object manager, agents) then listen on every interface, unless this setting of Ray's own is 0: then a cluster
# started here, and this driver, listen on 127.0.0.1 only. Read when Ray is imported.
LOOPBACK_SETTING = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOOPBACK = "127.0.0.1"


def _on_loopback(address: str | None) -> bool:
    """A cluster this driver starts (no address), or one on this machine's loopback interface."""
    if address is None:
        return True
    host = address.removeprefix("ray://").rpartition(":")[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def _check_reachable(address: str | None, seconds: float = 10.0) -> None:
    """A head address (HOST:PORT) that nothing answers on fails here in seconds; Ray itself retries for minutes."""
    if not address or address.startswith("ray://") or address == "auto":
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except ValueError:
        raise InputError(f"--executor ray:{address}: expected ray:HOST:PORT") from None
    except OSError as exc:
        raise InputError(f"--executor: cannot reach the Ray cluster at {address} ({exc.strerror or exc})") from None


def _token_auth_if_available() -> None:
    """`ray start` (Ray ≥ 2.5x) turns token authentication on, while a client defaults to off and is refused. A
    client with a token also reaches clusters without authentication, so a token on this machine is used."""
    token = os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") or \
        (Path.home() / ".ray" / "auth_token").is_file()
    if token:
        os.environ.setdefault("RAY_AUTH_MODE", "token")


def _drain(queue, events: Events) -> None:
    if queue is None:
        return
    try:
        while not queue.empty():
            key, worker = queue.get_nowait()
            events(key, "running", worker)
    except Exception:  # noqa: BLE001
        pass


def _lost_worker_errors(ray) -> tuple[type[BaseException], ...]:
    ex = ray.exceptions
    names = ("WorkerCrashedError", "NodeDiedError", "ObjectLostError", "OwnerDiedError", "LocalRayletDiedError",
             "ActorDiedError", "RaySystemError")
    return tuple(getattr(ex, n) for n in names if hasattr(ex, n))
