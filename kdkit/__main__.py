"""Command line: run a notebook's experiments without Jupyter, e.g. bigger or with more seeds.

    python -m kdkit list
    python -m kdkit reproduce start_here --seeds 10
"""
from __future__ import annotations

import argparse
import sys


def _reproduce_start_here(seeds: int) -> list[str]:
    from kdkit.experiments import mnist1d, start_here

    data = mnist1d.data_with_teacher()
    return [start_here.kd_versus_labels(data, seeds=range(seeds)).report()]


EXPERIMENTS = {"start_here": _reproduce_start_here}


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
    for line in EXPERIMENTS[args.experiment](args.seeds):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
