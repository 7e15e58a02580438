"""Compute the runs a notebook is missing on every core, then read them all from the cache.

A notebook's claims need dozens of small runs; each uses one torch thread (one thread is as
fast as two for these small networks, and its numbers do not depend on the machine's core
count). A laptop has at least two cores, so the runs that are not in the result cache yet
are computed by worker processes, one per core, which write them to the cache; the
notebook then reads every run from the cache as usual. Runs already on disk start no
worker: a re-run of a notebook stays instant.

Each call must be a module-level function of kdkit with picklable arguments (e.g.
``functools.partial(dml.cohort_run, data, ("mlp", "mlp"), seed=100)``). The workers are fresh
Python processes that import kdkit and read their calls from a pipe: nothing of the
notebook's (or script's) main module is re-run in them, and they are stopped if the
notebook is interrupted.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import torch

from kdkit.storage import CACHE_ENV_VAR, NotComputedYet, cache_dir, exclusive, lookup_only

Call = Callable[[], object]


def missing(calls: Sequence[Call]) -> list[Call]:
    """The calls whose result (or a checkpoint they need) is not on disk yet."""
    todo = []
    with lookup_only():
        for call in calls:
            try:
                call()
            except NotComputedYet:
                todo.append(call)
    return todo


def default_workers() -> int:
    """One worker per core this process may use (at least 1)."""
    available = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    return max(1, len(available))


def compute_missing(calls: Sequence[Call], *, workers: int | None = None) -> int:
    """Compute the results of ``calls`` that are not cached, ``workers`` at a time.

    Returns how many were computed. With one worker, or one call to make, they run here.
    An error in a worker is raised here, as if the call had run here.
    """
    todo = missing(calls)
    workers = min(default_workers() if workers is None else workers, len(todo))
    if workers <= 1:
        for call in todo:
            call()
        return len(todo)
    with tempfile.TemporaryDirectory(prefix="kdkit-workers-") as folder:
        queue = Path(folder) / "next-call"          # the index of the next call to take
        queue.write_text("0")
        logs = [Path(folder) / f"worker{i}.log" for i in range(workers)]
        processes = [_start_worker(todo, queue, log) for log in logs]
        try:
            for process, log in zip(processes, logs):
                if process.wait() != 0:
                    raise RuntimeError("a worker computing missing runs failed:\n"
                                       + log.read_text(errors="replace")[-3000:])
        finally:
            for process in processes:  # on an error or Ctrl-C: no worker outlives the call
                if process.poll() is None:
                    process.kill()
                    process.wait()
    return len(todo)


def _start_worker(calls: Sequence[Call], queue: Path, log: Path) -> subprocess.Popen:
    # The thread count is part of a cached result's key: the workers must match this process.
    payload = pickle.dumps((torch.get_num_threads(), str(cache_dir()), str(queue), list(calls)))
    command = [sys.executable, "-c", "from kdkit.experiments.parallel import work; work()"]
    with open(log, "wb") as errors:  # a file, not a pipe: a chatty worker can never block
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                   stderr=errors)
    process.stdin.write(payload)  # the worker reads it all at once, then works
    process.stdin.close()
    return process


def work() -> None:
    """A worker's main: read (threads, cache folder, queue file, calls) from stdin, then take
    the next call from the shared queue until none is left (the calls differ in cost, so
    taking them one by one keeps every core busy to the end)."""
    threads, folder, queue, calls = pickle.load(sys.stdin.buffer)
    torch.set_num_threads(threads)
    os.environ[CACHE_ENV_VAR] = folder
    while (index := _take(Path(queue))) < len(calls):
        calls[index]()  # the result goes to the cache; nothing travels back


def _take(queue: Path) -> int:
    """The next call's index, counted up under a lock shared by the workers."""
    with exclusive(queue):
        index = int(queue.read_text())
        queue.write_text(str(index + 1))
    return index
