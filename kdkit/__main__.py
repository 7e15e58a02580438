"""Command line: run a notebook's experiments without Jupyter, e.g. bigger or with more seeds.

    python -m kdkit list
    python -m kdkit reproduce start_here --seeds 10
"""
from __future__ import annotations

import argparse
import importlib
import sys

import torch

from kdkit.train import RunCounter, watching_every_fit


# Each module has ``reproduce(seeds) -> list[str]``: the notebook's claims, as report lines.
EXPERIMENTS = {
    "start_here": "kdkit.experiments.start_here",
    "ba_caruana": "kdkit.experiments.ba_caruana",
    "hinton": "kdkit.experiments.hinton",
    "tfkd": "kdkit.experiments.tfkd",
    "dml": "kdkit.experiments.dml",
    "byot": "kdkit.experiments.byot",
    "stagewise": "kdkit.experiments.stagewise",
    "multi_teacher": "kdkit.experiments.multi_teacher",
    "knowledge": "kdkit.experiments.knowledge",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdkit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the experiments that can be reproduced")
    reproduce = commands.add_parser("reproduce", help="run one notebook's claims over seeds")
    reproduce.add_argument("experiment", choices=sorted(EXPERIMENTS))
    reproduce.add_argument("--seeds", type=int, default=5, help="number of seeds (default 5)")
    args = parser.parse_args(argv)
    if args.command == "list":
        print("\n".join(sorted(EXPERIMENTS)))
        return 0
    if args.seeds < 2:
        parser.error("--seeds must be at least 2 to measure a spread")
    module = importlib.import_module(EXPERIMENTS[args.experiment])
    counter = RunCounter(f"reproducing {args.experiment}")
    # One torch thread, as the notebooks and the tests run: the same numbers as theirs (a sum split over
    # threads rounds differently), and the worker processes (one per core) inherit it instead of each
    # running two threads on a shared core.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with watching_every_fit(counter):
            lines = module.reproduce(args.seeds)
    finally:
        counter.close()
        torch.set_num_threads(threads)
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
