"""The `polyskill` command. Each subcommand lives in the module that owns it and is imported only
when used, so `polyskill drive` never loads torch and `polyskill --help` is instant.

    polyskill train --preset smoke --run-dir runs/smoke
    polyskill train --env CartPole-v1 --set network.d_model=64 --steps 50000
    polyskill serve --checkpoint runs/smoke/checkpoints/step-000000040000
    polyskill bench train | serve
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module, help). Each module has add_arguments(parser) and run(args) -> exit code.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("polyskill.trainer.cli", "train continually on gymnasium tasks"),
    "serve": ("polyskill.server.app", "serve a policy over gRPC"),
    "models": ("polyskill.trainer.models_cli", "list, promote, roll back and export versions"),
    "drive": ("polyskill_client.drive", "run gymnasium envs against a policy server"),
    "demo": ("polyskill.demo", "the main job: train, promote, serve and drive on one machine"),
    "up": ("polyskill.demo", "train, serve and promote without a time limit"),
    "bench": ("polyskill.benchmarks.cli", "benchmarks: train, serve, barrier"),
}


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("alembic", "mlflow", "urllib3", "git", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _module(name: str):
    module_name = SUBCOMMANDS[name][0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            return None  # not built yet in this checkout
        raise


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="polyskill", description="Train and serve adaptive multi-task robot policies."
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Only the chosen subcommand's module is imported (its imports can be heavy).
    chosen = next((a for a in argv if a in SUBCOMMANDS), None)
    for name, (_, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == chosen:
            module = _module(name)
            if module is None:
                print(f"polyskill {name}: not available in this installation", file=sys.stderr)
                return 2
            p.set_defaults(module=module)
            _entry(module, "add_{}_arguments", "add_arguments", name)(p)
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    return _entry(args.module, "run_{}", "run", args.command)(args)


def _entry(module, specific: str, generic: str, name: str):
    """A module serving several subcommands names its functions per command (run_demo, run_up)."""
    return getattr(module, specific.format(name), None) or getattr(module, generic)


if __name__ == "__main__":
    sys.exit(main())
