"""`polyskill bench NAME [args]`: each benchmark prints a table and writes JSON results."""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = {
    "train": "polyskill.benchmarks.train",
    "serve": "polyskill.benchmarks.serve",
    "barrier": "polyskill.benchmarks.barrier",
    "gpu": "polyskill.benchmarks.gpu",
    "curve": "polyskill.benchmarks.curve",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("which", choices=sorted(BENCHMARKS))
    p.add_argument("rest", nargs=argparse.REMAINDER, help="the benchmark's own arguments")


def run(args: argparse.Namespace) -> int:
    return importlib.import_module(BENCHMARKS[args.which]).main(args.rest)
