"""Results of finished runs, kept on disk so that an experiment runs once, not once per reader.

A notebook's claims are computed by the notebook *and* checked by the claim tests; both
call the same experiment functions with the same settings, so the second caller should
read what the first computed. :func:`cached` stores a run's result under a key made of

* the run's full configuration (method, hyper-parameters, seed, recipe),
* a fingerprint of everything the run reads (inputs, labels, cached teacher outputs),
* a fingerprint of kdkit's own source code (but for the presentation-only modules), the
  torch version and the thread count:

so a result is reused only when recomputing it would give the same numbers. Change a line
of a computing module, and every result is recomputed. Only runs without callbacks are
cached: a run a student watches in the playground always trains live.

Results are stored as plain numbers, strings and lists (no pickled objects), with the same
atomic writes and safe loads as the checkpoints, in ``<cache dir>/results``.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Callable

import torch

from kdkit import checkpoints
from kdkit.data import DataSplits, Split
from kdkit.experiments.runs import RunResult
from kdkit.storage import atomic_save, cache_dir, exclusive, refuse_to_compute, safe_load
from kdkit.train import History

RESULTS_FORMAT = 1  # bump when the stored layout changes


# Modules that cannot change a number: how results are shown, checked in exercises or
# launched from the shell. Editing them keeps the cached results; editing anything else
# (data, models, losses, the loop, the experiments) recomputes them.
PRESENTATION_ONLY = ("widgets.py", "viz.py", "classroom.py", "conventions.py", "__main__.py", "exercises")


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A hash of kdkit's computing source files: results of other code are not reused."""
    return source_fingerprint(Path(__file__).resolve().parents[1], ignore=PRESENTATION_ONLY)


def source_fingerprint(root: Path, *, ignore: tuple[str, ...] = ()) -> str:
    """A hash of the names and contents of the ``.py`` files below ``root``, leaving out
    those whose first path component (a file or folder name) is in ``ignore``."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if relative.parts[0] in ignore:
            continue
        digest.update(str(relative).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def data_fingerprint(data: DataSplits | Split) -> str:
    """A hash of everything a run can read: inputs, labels, cached teacher logits and extras."""
    splits = [data] if isinstance(data, Split) else [data.train, data.val, data.test]
    digest = hashlib.sha256()
    for split in splits:
        tensors = [split.x, split.y] + ([] if split.teacher_logits is None else [split.teacher_logits])
        tensors += [split.extras[name] for name in sorted(split.extras)]
        for tensor in tensors:
            digest.update(f"{tuple(tensor.shape)}{tensor.dtype}".encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def cached(config: dict, compute: Callable[[], object]):
    """``compute()``'s result for ``config``, computed once and then read from disk.

    ``config`` must name everything the computation depends on besides kdkit's code (use
    :func:`data_fingerprint` for the data); the result must be plain data (numbers,
    strings, lists, tuples, dicts), which is what is stored and returned.
    """
    key = {**config, "kdkit_code": code_fingerprint(), "torch": torch.__version__,
           "torch_threads": torch.get_num_threads(), "format": RESULTS_FORMAT}
    path = cache_dir() / "results" / f"{config.get('name', 'result')}-{checkpoints.config_key(key)}.pt"
    text = checkpoints.canonical_json(key)
    saved = safe_load(path)
    if isinstance(saved, dict) and saved.get("key") == text:
        return saved["result"]
    refuse_to_compute(path)
    with exclusive(path):  # another kernel may be computing the same result: wait, then read it
        saved = safe_load(path)
        if isinstance(saved, dict) and saved.get("key") == text:
            return saved["result"]
        result = compute()
        atomic_save({"key": text, "result": result}, path)
    return result


def cached_run(config: dict, data: DataSplits | Split, run: Callable[[], RunResult]) -> RunResult:
    """A :class:`RunResult` for ``config`` on ``data``, trained once, then read from disk."""
    stored = cached({**config, "data": data_fingerprint(data)}, lambda: _as_plain(run()))
    return _as_run(stored)


def _as_plain(result: RunResult) -> dict:
    return {"config": _plain(result.config), "records": _plain(result.history.records),
            "interrupted": result.history.interrupted, "val_acc": float(result.val_acc),
            "test_acc": float(result.test_acc), "seconds": float(result.seconds),
            "test_acc_per_output": {k: float(v) for k, v in result.test_acc_per_output.items()},
            "test_metrics": {k: float(v) for k, v in result.test_metrics.items()}}


def _plain(value):
    """``value`` with numpy or torch scalars turned into Python numbers, so that the
    safe loader (``weights_only``) accepts it; containers keep their type."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _as_run(stored: dict) -> RunResult:
    return RunResult(config=dict(stored["config"]),
                     history=History([dict(r) for r in stored["records"]], stored["interrupted"]),
                     val_acc=stored["val_acc"], test_acc=stored["test_acc"], seconds=stored["seconds"],
                     test_acc_per_output=dict(stored["test_acc_per_output"]),
                     test_metrics=dict(stored.get("test_metrics", {})))
