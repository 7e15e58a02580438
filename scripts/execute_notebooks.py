"""Execute notebooks in place so that their committed outputs are current.

    python scripts/execute_notebooks.py notebooks/*.ipynb     (or: make notebooks)

Each notebook is run top to bottom in a fresh kernel from this Python environment. Widget
state is not stored (a reader on GitHub sees the outputs; a live panel needs a kernel
anyway), nor are per-cell execution timestamps, so re-running changes only what changed.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def execute(path: Path, timeout: int) -> float:
    notebook = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    NotebookClient(notebook, timeout=timeout, kernel_name="python3", store_widget_state=False,
                   record_timing=False, resources={"metadata": {"path": str(path.parent)}}).execute()
    notebook.metadata.pop("widgets", None)
    nbformat.write(notebook, path)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    args = parser.parse_args()
    for path in args.notebooks:
        seconds = execute(path, args.timeout)
        print(f"{path}: executed in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
