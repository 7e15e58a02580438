"""Where kdkit keeps generated data and trained models, and how it writes them safely.

Writes are atomic (write a temporary file in the same folder, then ``os.replace``), so a
run interrupted halfway (Ctrl-C, a kernel restart) leaves either the old file or the new
one, never half a file. Reads use ``torch.load(weights_only=True)``, which refuses to run
code hidden in a pickle; a file that cannot be read is reported and treated as missing.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import torch

CACHE_ENV_VAR = "KDKIT_CACHE_DIR"


def cache_dir() -> Path:
    """The cache folder: ``$KDKIT_CACHE_DIR`` if set, else ``~/.cache/kdkit``.

    Created on first use (not on import).
    """
    root = os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "kdkit"
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_save(obj, path: Path) -> None:
    """``torch.save(obj, path)`` so that ``path`` is never seen half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
        os.replace(tmp_name, path)
    except BaseException:  # also on KeyboardInterrupt: never leave the temporary behind
        Path(tmp_name).unlink(missing_ok=True)
        raise


def safe_load(path: Path):
    """Load a file written by :func:`atomic_save`, or return None if missing or unreadable.

    An unreadable file (truncated, corrupted, or holding arbitrary pickled code) is
    reported with a warning and deleted so that it is rebuilt, never trusted.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any failure to read means "rebuild it"
        warnings.warn(f"kdkit: ignoring unreadable cache file {path.name} ({error.__class__.__name__}); "
                      "it will be rebuilt", RuntimeWarning, stacklevel=2)
        path.unlink(missing_ok=True)
        return None
