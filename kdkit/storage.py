"""Where kdkit keeps generated data and trained models, and how it writes them safely.

Writes are atomic (write a temporary file in the same folder, then ``os.replace``), so a
run interrupted halfway (Ctrl-C, a kernel restart) leaves either the old file or the new
one, never half a file. Reads use ``torch.load(weights_only=True)``, which refuses to run
code hidden in a pickle; a file that cannot be read is reported and treated as missing.
"""
from __future__ import annotations

import contextlib
import contextvars
import getpass
import os
import tempfile
import warnings
from pathlib import Path
from typing import Iterator

import torch

CACHE_ENV_VAR = "KDKIT_CACHE_DIR"


def cache_dir() -> Path:
    """The cache folder: ``$KDKIT_CACHE_DIR`` if set, else ``~/.cache/kdkit``.

    Created on first use (not on import). If it cannot be written to (a folder shared with
    other users, a read-only home), kdkit warns once and falls back to a private folder in
    the system's temporary directory, so that a notebook still runs.
    """
    root = os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "kdkit"
    path = Path(root).expanduser()
    if _writable_folder(path):
        return path
    fallback = Path(tempfile.gettempdir()) / f"kdkit-cache-{_user_name()}"
    if _writable_folder(fallback):
        if path not in _WARNED:
            _WARNED.add(path)
            warnings.warn(f"kdkit: cannot write to the cache folder {path} (does it belong to another "
                          f"user?); using {fallback} instead. Set {CACHE_ENV_VAR} to a folder of your "
                          "own to choose where data and trained teachers are kept.", RuntimeWarning,
                          stacklevel=2)
        return fallback
    raise PermissionError(f"kdkit cannot write to its cache folder {path} nor to {fallback}; set "
                          f"{CACHE_ENV_VAR} to a folder you can write to")


_WARNED: set[Path] = set()


def _writable_folder(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def _user_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name (some containers): any stable name will do
        return str(os.getuid()) if hasattr(os, "getuid") else "user"


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a ``.lock`` file beside it) inside the block.

    On a shared server several kernels may want the same teacher or data file at once;
    the first builds it, the others wait and then read it, instead of all of them
    spending the same minute of CPU. Where locks are not available (no ``fcntl``, a
    read-only folder) the block simply runs unlocked: the atomic writes still keep every
    file whole.
    """
    try:
        import fcntl
        handle = open(Path(path).with_name(Path(path).name + ".lock"), "a+")
    except (ImportError, OSError):
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def atomic_save(obj, path: Path) -> None:
    """``torch.save(obj, path)`` so that ``path`` is never seen half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    except PermissionError:
        raise PermissionError(f"kdkit cannot write {path}: permission denied on {path.parent}; set "
                              f"{CACHE_ENV_VAR} to a folder of your own") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
        os.replace(tmp_name, path)
    except PermissionError:
        Path(tmp_name).unlink(missing_ok=True)
        raise PermissionError(f"kdkit cannot replace {path}: it belongs to another user; set "
                              f"{CACHE_ENV_VAR} to a folder of your own") from None
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
    except PermissionError:
        warnings.warn(f"kdkit: cannot read the cache file {path} (permission denied: another user's "
                      f"file?); it will be rebuilt, if the folder allows. Set {CACHE_ENV_VAR} to a "
                      "folder of your own to avoid this.", RuntimeWarning, stacklevel=2)
        return None
    except Exception as error:  # any failure to read means "rebuild it"
        warnings.warn(f"kdkit: ignoring unreadable cache file {path.name} ({error.__class__.__name__}); "
                      "it will be rebuilt", RuntimeWarning, stacklevel=2)
        path.unlink(missing_ok=True)
        return None


class NotComputedYet(LookupError):
    """Raised instead of computing, inside :func:`lookup_only`: the result is not on disk."""


_LOOKUP_ONLY = contextvars.ContextVar("kdkit_lookup_only", default=False)


@contextlib.contextmanager
def lookup_only() -> Iterator[None]:
    """Inside the block, a cached result or checkpoint that is missing raises
    :class:`NotComputedYet` instead of being computed: a quick way to learn which runs
    of a list still need computing (see :mod:`kdkit.experiments.parallel`)."""
    token = _LOOKUP_ONLY.set(True)
    try:
        yield
    finally:
        _LOOKUP_ONLY.reset(token)


def refuse_to_compute(path: Path) -> None:
    """Raise :class:`NotComputedYet` for ``path`` when inside :func:`lookup_only`."""
    if _LOOKUP_ONLY.get():
        raise NotComputedYet(str(path))
