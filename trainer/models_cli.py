"""`polyskill models`: look at the registered versions and move the aliases by hand.

    polyskill models list                       # versions, aliases, eval return, env steps, gate
    polyskill models promote 7                  # champion -> 7 (servers following it swap)
    polyskill models rollback [--to 5]          # champion -> the previous champion
    polyskill models export 7 --onnx [--out DIR]  # ONNX file, also attached to the version

The store is MLFLOW_TRACKING_URI (else sqlite:///mlflow.db); `--name` picks the registered model.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .registry import CHAMPION, DEFAULT_MODEL_NAME, ModelRegistry


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default=DEFAULT_MODEL_NAME, help="registered model name")
    p.add_argument("--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI, else "
                   "sqlite:///mlflow.db)")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("list", help="versions with aliases and eval metrics")
    promote = sub.add_parser("promote", help="point the champion alias at VERSION")
    promote.add_argument("version", type=int)
    promote.add_argument("--alias", default=CHAMPION, help="alias to move (default champion)")
    rollback = sub.add_parser("rollback", help="move champion back to the previous champion")
    rollback.add_argument("--to", type=int, help="an explicit version instead of the previous")
    export = sub.add_parser("export", help="export a version (ONNX)")
    export.add_argument("version", type=int)
    export.add_argument("--onnx", action="store_true", required=True,
                        help="export the ONNX step function (the only format so far)")
    export.add_argument("--out", type=Path, help="folder for the checkpoint + model.onnx "
                        "(default ./export/NAME-vVERSION)")
    export.add_argument("--no-attach", action="store_true",
                        help="do not upload model.onnx into the version's artifacts")


def _list(reg: ModelRegistry) -> int:
    versions = reg.versions()
    if not versions:
        print(f"no versions of {reg.name!r} in {reg.uri}")
        return 0
    print(f"{'version':>7s}  {'aliases':20s} {'mean return':>11s} {'env steps':>10s} "
          f"{'onnx':5s} {'created':19s}  gate")
    for v in versions:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v.created_ms / 1000))
        mean = v.tags.get("eval.mean_return", "")
        mean = f"{float(mean):.4g}" if mean else "-"
        print(f"{v.version:>7d}  {','.join(v.aliases) or '-':20s} {mean:>11s} "
              f"{v.tags.get('env_steps', '-'):>10s} {v.tags.get('onnx', '-'):5s} {created}  "
              f"{v.tags.get('gate', '-')}")
    return 0


def _export(reg: ModelRegistry, version: int, out: Path | None, attach: bool) -> int:
    from polyskill.agent.export_onnx import ONNX_FILE, export_checkpoint

    out = out or Path("export") / f"{reg.name}-v{version}"
    local = reg.download(version, out)
    path = export_checkpoint(local)
    print(f"wrote {path}")
    if attach:
        info = reg.get(version)
        artifact_path = "checkpoints/" + info.source.rstrip("/").rsplit("/", 1)[-1]
        reg.client.log_artifact(info.run_id, str(path), artifact_path)
        reg.set_tag(version, "onnx", "true")
        print(f"attached {ONNX_FILE} to {reg.name} version {version} ({info.source})")
    return 0


def run(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    try:
        reg = ModelRegistry(args.name, args.tracking_uri)
        if args.action == "list":
            return _list(reg)
        if args.action == "promote":
            before = reg.alias(args.alias)
            if args.alias == CHAMPION:
                reg.promote(args.version)
            else:
                reg.get(args.version)
                reg.set_alias(args.alias, args.version)
            print(f"{reg.name}@{args.alias}: {before.version if before else '-'} -> "
                  f"{args.version}")
            return 0
        if args.action == "rollback":
            before = reg.alias(CHAMPION)
            to = reg.rollback(args.to)
            print(f"{reg.name}@{CHAMPION}: {before.version if before else '-'} -> {to}")
            return 0
        return _export(reg, args.version, args.out, not args.no_attach)
    except (MlflowException, ValueError, OSError) as e:
        print(f"polyskill models {args.action}: error: {e}", file=sys.stderr)
        return 2
