"""`polyskill bench barrier`: the reward-scale experiment, AMAGO-2 vs the scale-dependent baseline.

    polyskill bench barrier --preset scales --steps 200000 --seeds 0 1 2
    polyskill bench barrier --preset scales --rescale bandit=100      # the paper's rescaling test
    polyskill bench barrier --preset metaworld-scales --max-minutes 50  # chunked: rerun to go on

For each (agent, seed) the preset's whole task mix is trained with the same budget; for each task a
single-task reference (amago2, same budget, same seed) gives the score to normalise by. Every run
lives in its own run directory and resumes, so a study longer than one sitting is run in chunks
(`--max-minutes` stops the current run with a checkpoint; run the same command again). The report
(JSON, a markdown table and a PNG) only ever shows what was reached: runs still short of the budget
are marked partial, never extrapolated.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

AGENTS = ("amago2", "baseline")


@dataclass
class RunResult:
    label: str  # "amago2/seed0" or "reference/<task>/seed0"
    env_steps: int
    budget: int
    eval: dict[str, float]

    @property
    def done(self) -> bool:
        return self.env_steps >= self.budget


def _config(
    preset: str,
    steps: int,
    seed: int,
    agent: str,
    rescale: dict[str, float],
    only_task: str | None = None,
):
    from polyskill.trainer.presets import get_preset

    cfg = get_preset(preset)
    cfg.total_steps, cfg.seed = steps, seed
    cfg.network.agent = agent
    for task in cfg.tasks:
        task.reward_scale *= rescale.get(task.name, 1.0)
    if only_task is not None:
        cfg.tasks = [t for t in cfg.tasks if t.name == only_task]
        for t in cfg.tasks:
            t.weight = 1.0
    cfg.validate()
    return cfg


def _run(cfg, run_dir: Path, label: str, deadline: float) -> RunResult:
    from polyskill.trainer.loop import RunDir, train

    latest = RunDir(run_dir).latest_checkpoint()
    steps = json.loads((latest / "counters.json").read_text())["env_steps"] if latest else 0
    remaining = deadline - time.monotonic()
    if steps < cfg.total_steps and remaining > 30:
        cfg.max_seconds = remaining
        train(cfg, run_dir, track=False)
        latest = RunDir(run_dir).latest_checkpoint()
    if latest is None:
        return RunResult(label, 0, cfg.total_steps, {})
    meta = json.loads((latest / "model.json").read_text())
    counters = json.loads((latest / "counters.json").read_text())
    return RunResult(label, counters["env_steps"], cfg.total_steps, meta.get("eval", {}))


def _task_score(result: RunResult, task: str) -> float | None:
    return result.eval.get(f"eval/{task}/return")


def _gain(result: RunResult, task: str, k: int) -> float | None:
    first, last = (result.eval.get(f"eval/{task}/return_ep{i}") for i in (1, k))
    return None if first is None or last is None else last - first


def report(
    args: argparse.Namespace, results: dict[str, RunResult], tasks: list[str], k: int
) -> dict:
    rows = []
    for agent in AGENTS:
        for task in tasks:
            scores, normed, gains = [], [], []
            for seed in args.seeds:
                run = results.get(f"{agent}/seed{seed}")
                ref = results.get(f"reference/{task}/seed{seed}")
                s = _task_score(run, task) if run else None
                r = _task_score(ref, task) if ref else None
                if s is not None:
                    scores.append(s)
                    g = _gain(run, task, k)
                    if g is not None:
                        gains.append(g)
                if s is not None and r not in (None, 0):
                    normed.append(s / r)
            rows.append(
                {
                    "agent": agent,
                    "task": task,
                    "return": float(np.mean(scores)) if scores else None,
                    "normalised": float(np.mean(normed)) if normed else None,
                    "in_context_gain": float(np.mean(gains)) if gains else None,
                    "seeds": len(scores),
                }
            )
    return {
        "preset": args.preset,
        "rescale": args.rescale,
        "steps": args.steps,
        "seeds": args.seeds,
        "machine": f"{platform.machine()} {platform.processor()}, torch threads 1",
        "runs": {
            k: {"env_steps": r.env_steps, "budget": r.budget, "done": r.done, "eval": r.eval}
            for k, r in results.items()
        },
        "rows": rows,
    }


def write(summary: dict, out: Path, name: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(summary, indent=2))
    partial = [k for k, r in summary["runs"].items() if not r["done"]]
    lines = [
        f"# Reward-scale barrier: `{name}`",
        "",
        f"Preset `{summary['preset']}`, rescale {summary['rescale'] or 'none'}, budget "
        f"{summary['steps']:,} env steps per run, seeds {summary['seeds']}, "
        f"machine: {summary['machine']}.",
        "",
        "| agent | task | return | normalised by single-task reference | in-context gain | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for r in summary["rows"]:

        def fmt(x: float | None, spec: str = ".3f") -> str:
            return "-" if x is None else format(x, spec)

        lines.append(
            f"| {r['agent']} | {r['task']} | {fmt(r['return'])} | "
            f"{fmt(r['normalised'], '.2f')} | {fmt(r['in_context_gain'])} | {r['seeds']} |"
        )
    if partial:
        lines += ["", f"Partial runs (short of the budget, reported as reached): {partial}"]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    _plot(summary, out / f"{name}.png")


def _plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in summary["rows"]})
    fig, ax = plt.subplots(figsize=(1.8 * len(tasks) + 2, 3.5))
    width = 0.38
    for i, agent in enumerate(AGENTS):
        vals = [
            next(
                (
                    r["normalised"]
                    for r in summary["rows"]
                    if r["agent"] == agent and r["task"] == t
                ),
                None,
            )
            or 0.0
            for t in tasks
        ]
        ax.bar(np.arange(len(tasks)) + (i - 0.5) * width, vals, width, label=agent)
    ax.axhline(0.8, color="grey", linestyle="--", linewidth=1, label="80 % of single-task")
    ax.set_xticks(np.arange(len(tasks)), tasks, rotation=15)
    ax.set_ylabel("return / single-task reference")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="polyskill bench barrier", description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="scales")
    p.add_argument("--steps", type=int, default=200_000, help="env-step budget of every run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--rescale",
        action="append",
        default=[],
        metavar="TASK=FACTOR",
        help="multiply one task's rewards (the paper's x100 test)",
    )
    p.add_argument("--no-reference", action="store_true", help="skip single-task references")
    p.add_argument(
        "--max-minutes",
        type=float,
        default=0.0,
        help="stop after this long (runs checkpoint); run again to continue",
    )
    p.add_argument("--root", type=Path, default=Path("runs/barrier"))
    p.add_argument("--out", type=Path, default=Path("docs/results"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rescale = {}
    for item in args.rescale:
        task, _, factor = item.partition("=")
        rescale[task] = float(factor)
    args.rescale = rescale
    name = args.preset + "".join(f"_{t}x{f:g}" for t, f in sorted(rescale.items()))
    root = args.root / name
    deadline = time.monotonic() + (args.max_minutes * 60 if args.max_minutes else 1e12)

    base = _config(args.preset, args.steps, 0, "amago2", rescale)
    tasks, k = [t.name for t in base.tasks], base.episodes_per_trial
    results: dict[str, RunResult] = {}
    for seed in args.seeds:
        for agent in AGENTS:
            label = f"{agent}/seed{seed}"
            cfg = _config(args.preset, args.steps, seed, agent, rescale)
            results[label] = _run(cfg, root / agent / f"seed{seed}", label, deadline)
        if not args.no_reference:
            for task in tasks:
                label = f"reference/{task}/seed{seed}"
                cfg = _config(args.preset, args.steps, seed, "amago2", rescale, only_task=task)
                results[label] = _run(
                    cfg, root / "reference" / task / f"seed{seed}", label, deadline
                )
    summary = report(args, results, tasks, k)
    write(summary, args.out, name)
    for r in summary["rows"]:
        print(
            f"{r['agent']:9s} {r['task']:18s} return {r['return']} normalised "
            f"{r['normalised']} gain {r['in_context_gain']}"
        )
    print(f"wrote {args.out / name}.{{json,md,png}}")
    return 0
