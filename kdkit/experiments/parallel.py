"""Compute the runs a notebook is missing on every core, then read them all from the cache.

A notebook's claims need dozens of small runs; each uses one torch thread (one thread is as
fast as two for these small networks, and its numbers do not depend on the machine's core
count). A laptop has at least two cores, so the runs that are not in the result cache yet
are computed by worker processes, one per core, which write them to the cache; the
notebook then reads every run from the cache as usual. Runs already on disk start no
worker: a re-run of a notebook stays instant.

Each call must be a module-level function of kdkit with picklable arguments (e.g.
``functools.partial(dml.cohort_run, data, ("mlp", "mlp"), seed=100)``). The workers are fresh
Python processes that import kdkit, load the calls from a file and ask for the next one over
a pipe: nothing of the notebook's (or script's) main module is re-run in them, nothing
depends on file locks, and they are stopped if the notebook is interrupted.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable, Sequence

import torch

from kdkit.storage import CACHE_ENV_VAR, NotComputedYet, cache_dir, lookup_only

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
    An error in a worker is raised here (with the end of its log), as if the call had run
    here; the other workers then stop after their current call.
    """
    todo = missing(calls)
    workers = min(default_workers() if workers is None else workers, len(todo))
    if workers <= 1:
        for call in todo:
            call()
        return len(todo)
    with tempfile.TemporaryDirectory(prefix="kdkit-workers-") as folder:
        payload = Path(folder) / "calls.pickle"
        # The thread count is part of a cached result's key: the workers must match this process.
        payload.write_bytes(pickle.dumps((torch.get_num_threads(), str(cache_dir()), list(todo))))
        logs = [Path(folder) / f"worker{i}.log" for i in range(workers)]
        processes = []
        try:
            for log in logs:
                processes.append(_start_worker(payload, log))
            _hand_out(processes, logs, len(todo))
        finally:
            for process in processes:  # on an error or Ctrl-C: no worker outlives the call
                if process.poll() is None:
                    process.kill()
                process.wait()
    return len(todo)


def run_all(calls: Sequence[Call], *, workers: int | None = None) -> list:
    """The results of ``calls``, in order: those not cached yet are computed on every core first
    (:func:`compute_missing`), then every call reads its result from the cache."""
    calls = list(calls)
    compute_missing(calls, workers=workers)
    return [call() for call in calls]


def _start_worker(payload: Path, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-c", "from kdkit.experiments.parallel import work; work()", str(payload)]
    with open(log, "wb") as errors:  # a file, not a pipe: a chatty worker can never block
        return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors)


def _hand_out(processes: list[subprocess.Popen], logs: list[Path], count: int) -> None:
    """Give each worker the index of the next call whenever it asks ("next"), until none is
    left; the calls differ in cost, so handing them out one by one keeps every core busy.
    One thread per worker; a counter under a lock is the queue."""
    lock, indices, failed = threading.Lock(), iter(range(count)), []

    def serve(process: subprocess.Popen, log: Path) -> None:
        for _request in process.stdout:
            with lock:
                index = count if failed else next(indices, count)  # count means "stop"
            try:
                process.stdin.write(f"{index}\n".encode())
                process.stdin.flush()
            except OSError:  # the worker died: its exit code says so below
                break
            if index == count:
                break
        if process.wait() != 0:
            with lock:
                failed.append(log.read_text(errors="replace")[-3000:])

    threads = [threading.Thread(target=serve, args=pair, daemon=True) for pair in zip(processes, logs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failed:
        raise RuntimeError("a worker computing missing runs failed:\n" + failed[0])


def work() -> None:
    """A worker's main: load (threads, cache folder, calls) from the file named on the command
    line, then ask for a call's index on stdout and make that call, until told to stop."""
    threads, folder, calls = pickle.loads(Path(sys.argv[1]).read_bytes())
    torch.set_num_threads(threads)
    os.environ[CACHE_ENV_VAR] = folder
    requests, answers = sys.stdout, sys.stdin
    sys.stdout = sys.stderr  # whatever a call prints must not mix with the requests
    while True:
        requests.write("next\n")
        requests.flush()
        index = int(answers.readline() or len(calls))
        if index >= len(calls):
            return
        calls[index]()  # the result goes to the cache; nothing travels back
