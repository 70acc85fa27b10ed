"""`polyskill train`: build a config from a preset, --env ids and --set overrides, then train."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import ConfigError, TrainConfig, apply_overrides, settable_keys
from .presets import get_preset, tasks_from_env_ids


def add_arguments(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow (nor register)")
    p.add_argument("--model-name", default="polyskill", help="registered model name")
    p.add_argument("--no-register", action="store_true",
                   help="do not register checkpoints as model versions")
    p.add_argument("--no-onnx", action="store_true", help="register without the ONNX export")
    p.add_argument("--gate-margin", type=float, default=0.05,
                   help="champion gate: allowed drop of the mean eval return (fraction)")
    p.add_argument("--gate-task-drop", type=float, default=0.2,
                   help="champion gate: allowed drop of any task's eval return (fraction)")
    p.add_argument("--list-keys", action="store_true", help="list settable keys and exit")


def build_config(args: argparse.Namespace) -> TrainConfig:
    cfg = get_preset(args.preset) if args.preset else TrainConfig()
    if args.env:
        cfg.tasks = tasks_from_env_ids(args.env)
    overrides = list(args.set or [])
    if args.steps is not None:
        overrides.append(f"total_steps={args.steps}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    return apply_overrides(cfg, overrides)


def run(args: argparse.Namespace) -> int:
    if args.list_keys:
        for key, desc in settable_keys().items():
            print(f"{key:32s} {desc}")
        return 0
    from .loop import build_network, train

    try:
        cfg = build_config(args)
        build_network(cfg)  # incompatible spaces fail now, before anything is written
        name = args.preset or "-".join(t.name for t in cfg.tasks)
        run_dir = args.run_dir or Path("runs") / name
        registrar = None
        if not (args.no_mlflow or args.no_register):
            from .registry import GateConfig
            from .registry_hook import Registrar

            gate = GateConfig(args.gate_margin, args.gate_task_drop)
            registrar = Registrar(run_dir, args.model_name, gate, onnx=not args.no_onnx,
                                  preset=args.preset or "", experiment=cfg.experiment)
        try:
            metrics = train(cfg, run_dir, on_checkpoint=registrar, track=not args.no_mlflow)
        finally:
            if registrar is not None:
                registrar.close()
    except ConfigError as e:
        print(f"polyskill train: config error: {e}", file=sys.stderr)
        return 2
    print({k: round(v, 3) for k, v in metrics.items() if k.endswith("return")})
    return 0
