"""Resumable parallel jobs: the machinery shared by ``annotate build`` and ``annotate resynth``.

A job is a fixed list of :class:`Task` s planned before any work starts (names and contents never depend
on the worker count). Each task runs in a worker, writes its outputs atomically, then a small
``.parts/{name}.json`` record naming its plan digest and outputs; a task is done when that record exists,
its digest matches the current plan and its outputs exist. So a killed job run again redoes only what is
missing, and a task whose contents changed (the corpus changed between runs) is redone, never skipped.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable

from ..core.storage import Store

BACKENDS = ("loky", "dask", "ray")
PARTS = ".parts"


class JobError(Exception):
    """A problem with the job as a whole (one line for the user, exit code 2)."""


@dataclass(frozen=True)
class Task:
    """One unit of work: a final name, the ids of the items it holds, and a payload for the worker."""

    name: str
    items: tuple[str, ...]
    payload: object = None

    @property
    def digest(self) -> str:
        """What the task holds, as a short hash: a part record with another digest is stale."""
        return plan_digest(self.items)


def plan_digest(items: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:16]


def part_path(name: str) -> str:
    return f"{PARTS}/{name}.json"


def read_part(store: Store, name: str) -> dict | None:
    """A task's part record, or None if it is missing or unreadable (then the task is redone)."""
    if not store.exists(part_path(name)):
        return None
    try:
        return json.loads(store.read_text(part_path(name)))
    except (OSError, ValueError):
        return None


def is_done(store: Store, task: Task) -> bool:
    """True when ``task`` finished with the same contents it has now and its outputs are all there."""
    part = read_part(store, task.name)
    if part is None or part.get("plan") != task.digest:
        return False
    return all(store.exists(rel) for rel in part.get("outputs", []))


def stale_tasks(store: Store, tasks: list[Task]) -> list[str]:
    """Names of tasks that have a part record from a different plan (the input changed since that run)."""
    out = []
    for t in tasks:
        part = read_part(store, t.name)
        if part is not None and part.get("plan") != t.digest:
            out.append(t.name)
    return out


def pinned_parameters(store: Store, name: str, params: dict, *, overwrite: bool, what: str,
                      error: type[Exception] = JobError, ignore: tuple[str, ...] = ()) -> dict | None:
    """The parameters an earlier run pinned in ``name`` when they differ from ``params`` (keys in ``ignore``
    aside), else None. Differences raise a one-line ``error`` naming the changed keys unless ``overwrite``;
    then the caller removes the earlier outputs before pinning ``params``."""
    if not store.exists(name):
        return None
    old = json.loads(store.read_text(name))
    kept = {k: v for k, v in old.items() if k not in ignore}
    if kept == params:
        return None
    if not overwrite:
        changed = sorted(k for k in set(kept) | set(params) if kept.get(k) != params.get(k))
        raise error(f"{store.out} holds {what} made with other parameters (changed: {', '.join(changed)}); "
                    "use another --out or pass --overwrite to replace it")
    return old


def _exit_with_parent() -> None:
    """In a worker process: exit as soon as the process that started it is gone (no orphaned workers)."""
    parent = os.getppid()
    if parent <= 1 or getattr(_exit_with_parent, "watching", False):
        return
    _exit_with_parent.watching = True

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="vocmask-parent-watch", daemon=True).start()


def run_task(fn: Callable[[Task, str], dict], task: Task, out: str, driver_pid: int) -> dict:
    """Worker side: run ``fn(task, out)``, which writes the task's outputs and returns its part record
    (with ``outputs``: the relative paths it wrote); then write that record, last, marking the task done."""
    if os.getpid() != driver_pid:
        _exit_with_parent()
    part = fn(task, out)
    part = {**part, "task": task.name, "plan": task.digest, "items": len(task.items)}
    part.setdefault("outputs", [])
    Store(out).write_text(part_path(task.name), json.dumps(part))
    return part


@contextmanager
def parallel_backend(backend: str | None, workers: int, scheduler: str | None = None):
    """joblib configuration for ``backend``; yields the ``return_as`` mode that backend supports.

    loky: local processes. dask: a ``distributed`` client on ``scheduler`` (``tcp://...``), or a local
    cluster of ``workers`` single-threaded processes. ray: joblib's Ray backend (optional extra;
    ``scheduler`` is the Ray address); it cannot stream results, so progress comes at the end.
    """
    from joblib import parallel_config

    backend = backend or "loky"
    if backend == "dask":
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise JobError("--backend dask needs dask.distributed: pip install 'vocmask[cluster]'") from None
        with ExitStack() as stack:
            # joblib's dask backend uses the active (default) client, so entering it is enough
            if scheduler:
                stack.enter_context(Client(scheduler))
            else:
                cluster = stack.enter_context(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                           dashboard_address=None))
                stack.enter_context(Client(cluster))
            with parallel_config(backend="dask", n_jobs=-1 if scheduler else workers):
                yield "generator_unordered"
        return
    if backend == "ray":
        try:
            import ray
            from ray.util.joblib import register_ray
        except ImportError:
            raise JobError("--backend ray needs Ray: pip install 'vocmask[ray]'") from None
        register_ray()
        if not ray.is_initialized():
            ray.init(address=scheduler, num_cpus=None if scheduler else workers)
        with parallel_config(backend="ray", n_jobs=workers):
            yield "list"
        return
    if scheduler:
        raise JobError(f"--scheduler only applies to --backend dask or ray, not {backend}")
    with parallel_config(backend=backend, n_jobs=workers):
        yield "generator_unordered"


def run_tasks(tasks: list[Task], fn: Callable[[Task, str], dict], store: Store, *, workers: int = 1,
              backend: str | None = None, scheduler: str | None = None, progress: bool = True,
              desc: str = "", unit: str = "item") -> list[dict]:
    """Run every task of ``tasks`` that is not done (largest first), in parallel; return all part records
    in plan order. ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one)."""
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    store.makedirs(PARTS)
    store.remove_temporaries(PARTS)
    done = {t.name for t in tasks if is_done(store, t)}
    # the largest tasks first (stable, so names break ties): the workers then finish together instead of one
    # running a split's full last task alone (longest-processing-time-first); contents never depend on the order
    todo = sorted((t for t in tasks if t.name not in done), key=lambda t: -len(t.items))
    bar = tqdm(total=sum(len(t.items) for t in tasks), initial=sum(len(t.items) for t in tasks if t.name in done),
               unit=unit, desc=desc, disable=not progress)
    if todo:
        with parallel_backend(backend, workers, scheduler) as return_as:
            for part in Parallel(return_as=return_as)(delayed(run_task)(fn, t, store.out, os.getpid()) for t in todo):
                bar.update(part["items"])
    bar.close()
    return [read_part(store, t.name) for t in tasks]
