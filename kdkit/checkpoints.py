"""Load-or-train: a trained model is reused only if it was trained with the same config.

A checkpoint's file name is a hash of its *full* configuration (data set, architecture,
seed, epochs, learning rate, objective, code version...), so changing any of them trains
a new model instead of silently reusing a stale one. Files are written atomically and
read with ``weights_only=True``, and a model is verified on load: a file that cannot be read,
whose weights do not match the checksum saved with them, or that holds NaN weights is
reported with a warning and rebuilt, never used.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from kdkit.storage import atomic_save, cache_dir, exclusive, refuse_to_compute, safe_load
from kdkit.train import torch_threads
from kdkit.validation import check_positive_int

CHECKPOINT_FORMAT = 2  # bump when the saved layout changes: old files are then ignored
TRAINING_THREADS = 1   # see load_or_train


def config_key(config: dict) -> str:
    """A short stable hash of a JSON-able configuration (key order does not matter)."""
    try:
        text = canonical_json(config)
    except TypeError as error:
        raise ValueError(f"config must be JSON-like (dicts, lists, numbers, strings): {error}") from None
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Checkpoint:
    """A model together with what was measured when it was trained."""
    model: nn.Module
    metrics: dict
    from_cache: bool


def load_or_train(config: dict, build: Callable[[], nn.Module],
                  train: Callable[[nn.Module], dict], *, folder: Path | None = None,
                  threads: int | None = TRAINING_THREADS) -> Checkpoint:
    """Return the model trained with ``config``, training it only if no valid file exists.

    ``build()`` makes the untrained model (the same architecture every time); ``train(model)``
    trains it in place and returns a dict of metrics (e.g. validation accuracy) to store
    beside the weights. ``config`` must describe everything that ``build`` and ``train`` do.

    Training runs on ``threads`` torch threads, which is part of the key: parallel sums
    round differently with another thread count, so the same recipe would give slightly
    different weights, and every result downstream of a cached teacher would depend on the
    machine that happened to train it first. One thread is as fast as two for the small
    models of the workbook; pass ``threads=None`` to use torch's setting (big models).
    """
    config = _with_threads(config, threads)
    path = checkpoint_path(config, folder=folder, threads=None)
    loaded = _load(path, config, build)
    if loaded is not None:
        return loaded
    refuse_to_compute(path)
    with exclusive(path):  # another kernel may be training the same model: wait, then read it
        loaded = _load(path, config, build, warn=False)
        if loaded is not None:
            return loaded
        model = _built(build)
        with torch_threads(threads):
            metrics = train(model)
        if not isinstance(metrics, dict):
            raise ValueError(f"train(model) must return a dict of metrics (e.g. {{'val_acc': 0.9}}), "
                             f"got {type(metrics).__name__}")
        _save(path, config, model, metrics)
    return Checkpoint(model, _plain_numbers(metrics), from_cache=False)


def save_trained(config: dict, model: nn.Module, metrics: dict, *, folder: Path | None = None) -> None:
    """Keep a model that was trained elsewhere (e.g. inside a cached run) under ``config``,
    exactly as :func:`load_or_train` would have (call that with ``threads=None`` and the same
    ``config`` to load it). ``config`` must describe how the model was trained, thread count
    included."""
    path = checkpoint_path(config, folder=folder, threads=None)
    with exclusive(path):
        _save(path, config, model, metrics)


def _save(path: Path, config: dict, model: nn.Module, metrics: dict) -> None:
    model.eval()
    state = model.state_dict()
    atomic_save({"format": CHECKPOINT_FORMAT, "config_json": canonical_json(config),
                 "state_dict": state, "checksum": state_checksum(state),
                 "metrics": _plain_numbers(metrics)}, path)


def _load(path: Path, config: dict, build, *, warn: bool = True) -> Checkpoint | None:
    """The verified checkpoint at ``path`` for ``config``, or None (reported if damaged)."""
    saved = safe_load(path)
    if saved is None or not _matches(saved, config):
        return None
    model = _built(build)
    problem = _load_verified(model, saved)
    if problem is None:
        return Checkpoint(model, dict(saved["metrics"]), from_cache=True)
    if warn:
        warnings.warn(f"kdkit: the checkpoint {path} {problem}; training it again", RuntimeWarning,
                      stacklevel=3)
    return None


def state_checksum(state: dict) -> str:
    """A hash of a state dict's names and values: a checkpoint edited or damaged on disk
    (NaN written into its weights, a truncated tensor) no longer matches the one saved."""
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _built(build: Callable[[], nn.Module]) -> nn.Module:
    model = build()
    if not isinstance(model, nn.Module):
        raise ValueError(f"build() must return a torch module (the untrained model), "
                         f"got {type(model).__name__}")
    return model


def _load_verified(model: nn.Module, saved: dict) -> str | None:
    """Load ``saved`` into ``model``; None if it is sound, else what is wrong with it."""
    state = saved.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        return "holds no usable weights"
    if saved.get("checksum") != state_checksum(state):
        return "does not match the checksum it was saved with (damaged or edited)"
    if not all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point()):
        return "holds NaN or inf weights"
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError):
        return "does not fit the model's architecture"
    model.eval()
    return None


def checkpoint_path(config: dict, *, folder: Path | None = None,
                    threads: int | None = TRAINING_THREADS) -> Path:
    """Where :func:`load_or_train` keeps the model for ``config`` (trained on ``threads``)."""
    config = _with_threads(config, threads)
    folder = Path(folder) if folder is not None else cache_dir() / "checkpoints"
    name = str(config.get("name", "model")).replace("/", "_")
    return folder / f"{name}-{config_key(config)}.pt"


def _with_threads(config: dict, threads: int | None) -> dict:
    if threads is None:
        return config
    return {**config, "torch_threads": check_positive_int("threads", threads)}


def canonical_json(config: dict) -> str:
    # No default=repr: a repr holding a memory address would change the key every session.
    return json.dumps(config, sort_keys=True)


def _plain_numbers(metrics: dict) -> dict:
    """Metrics as plain Python numbers, which ``weights_only`` loading accepts (numpy's are not)."""
    try:
        return {str(name): float(value) for name, value in metrics.items()}
    except (TypeError, ValueError):
        raise ValueError(f"metrics must map names to numbers, got {metrics!r}") from None


def _matches(saved, config: dict) -> bool:
    return (isinstance(saved, dict) and saved.get("format") == CHECKPOINT_FORMAT
            and saved.get("config_json") == canonical_json(config))
