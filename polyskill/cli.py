"""The `polyskill` command: train, serve, bench, demo.

polyskill train --preset smoke --run-dir runs/smoke
polyskill train --env CartPole-v1 --set network.d_model=64 --steps 50000
polyskill serve --checkpoint runs/smoke/checkpoints/LATEST
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger("polyskill")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("alembic", "mlflow", "urllib3", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def build_train_config(args: argparse.Namespace):
    from polyskill.trainer.config import TrainConfig, apply_overrides
    from polyskill.trainer.presets import get_preset, tasks_from_env_ids

    cfg = get_preset(args.preset) if args.preset else TrainConfig()
    if args.env:
        cfg.tasks = tasks_from_env_ids(args.env)
    overrides = list(args.set or [])
    if args.steps is not None:
        overrides.append(f"total_steps={args.steps}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    return apply_overrides(cfg, overrides)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help="starting configuration: smoke, scales, cartpole")
    p.add_argument(
        "--env",
        action="append",
        metavar="ENV_ID",
        help="a gymnasium id to train on; repeat for a multi-task suite",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a setting by dotted name (see --list-keys)",
    )
    p.add_argument("--steps", type=int, help="total env steps (total_steps)")
    p.add_argument("--seed", type=int)
    p.add_argument("--run-dir", type=Path, help="run directory (default runs/<preset or env>)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    p.add_argument("--list-keys", action="store_true", help="list settable keys and exit")


def run_train(args: argparse.Namespace) -> int:
    from polyskill.trainer.config import ConfigError, settable_keys

    if args.list_keys:
        for key, desc in settable_keys().items():
            print(f"{key:32s} {desc}")
        return 0
    try:
        cfg = build_train_config(args)
        from polyskill.trainer.loop import build_network, train

        build_network(cfg)  # incompatible spaces fail now, not after the first iteration
    except ConfigError as e:
        print(f"polyskill train: config error: {e}", file=sys.stderr)
        return 2
    name = args.preset or "-".join(t.name for t in cfg.tasks)
    run_dir = args.run_dir or Path("runs") / name
    try:
        metrics = train(cfg, run_dir, track=not args.no_mlflow)
    except ConfigError as e:
        print(f"polyskill train: config error: {e}", file=sys.stderr)
        return 2
    print({k: round(v, 3) for k, v in metrics.items() if k.endswith("return")})
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="polyskill", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_arguments(sub.add_parser("train", help="train continually on gymnasium tasks"))
    try:
        from polyskill.server.app import add_serve_arguments, run_serve
    except ImportError:  # the server is optional at import time for trainer-only installs
        add_serve_arguments = run_serve = None
    if add_serve_arguments is not None:
        add_serve_arguments(sub.add_parser("serve", help="serve a policy over gRPC"))
    bench = sub.add_parser("bench", help="benchmarks: train, serve")
    bench.add_argument("which", choices=["train", "serve"])
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    demo = sub.add_parser("demo", help="the main job on embedded defaults")
    demo.add_argument("--minutes", type=float, default=3.0)
    demo.add_argument("--run-dir", type=Path, default=Path("runs/demo"))
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    if args.command == "train":
        return run_train(args)
    if args.command == "serve":
        return run_serve(args)
    if args.command == "bench":
        if args.which == "train":
            from polyskill.benchmarks.train import main as bench_main
        else:
            from polyskill.benchmarks.serve import main as bench_main
        return bench_main(args.rest)
    if args.command == "demo":
        from polyskill.demo import run_demo

        return run_demo(args.minutes, args.run_dir)
    return 1


if __name__ == "__main__":
    sys.exit(main())
