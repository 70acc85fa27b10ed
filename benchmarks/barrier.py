"""`polyskill bench barrier`: the reward-scale experiment, AMAGO-2 vs the scale-dependent baseline.

    polyskill bench barrier --preset scales --steps 200000 --seeds 0 1 2
    polyskill bench barrier --preset scales --rescale bandit=100      # the paper's rescaling test
    polyskill bench barrier --preset scales --reference-agents amago2 baseline
    polyskill bench barrier --preset metaworld-scales --max-minutes 50  # chunked: rerun to go on
    polyskill bench barrier --set loss.reward_multiplier=0.1  # a setting for every run

For each (agent, seed) the preset's whole task mix is trained with the same budget; for each task a
single-task reference (same budget, same seed) gives the score to normalise by: amago2's by
default, each agent's own with `--reference-agents amago2 baseline` (a baseline that is crowded
out in the mix learns the task alone; one that cannot learn it at all is not crowded out). Every run
lives in its own run directory and resumes, so a study longer than one sitting is run in chunks
(`--max-minutes` stops the current run with a checkpoint; run the same command again). Run
directories are not in git, so a study also goes on across machines through its committed
report: a run it records as finished, at the same budget and evaluation, is scored from the report
when its directory is not on this machine (and not trained again), so each sitting adds runs to the
same table (delete the report, or pass another `--out`, to redo them). Runs a call does not
score stay in the report's record; a call at another budget or evaluation starts a new record in
the same file, so give it its own `--out` (raising `--steps` with the same `--root` resumes every
run; `polyskill bench curve` lays such per-budget reports side by side). The report
(JSON, a markdown table and a PNG) only ever shows what was reached: runs still short of the budget
are marked partial, never extrapolated.

Scores come from one final evaluation of each run's last checkpoint with `--eval-trials` trials
(8x the preset's periodic evaluation by default, at most 256: 256 for `scales`, whose 32 are too
few for a bandit; 16 for Meta-World, whose trials are 1,500 steps), on the
same task samples for every run (one evaluation seed), cached in the run directory. Chance level is
measured too (uniformly random actions, discrete tasks; Meta-World's from the suite's table), and
each task is normalised two ways: score / reference, and (score - chance) / (reference - chance).
The second is the one to read where chance is far from zero (a 5-arm bandit pays 2.56 per trial
at random, 3.6 when learned). Meta-World also reports success and the return normalised by its
scripted expert (trainer/envs/metaworld_v3_reference_returns.json).

This module trains and scores the runs; `barrier_report.py` turns their scores into the
report and keeps the record that carries finished runs across machines.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from .barrier_report import (
    AGENTS,
    RunResult,
    record,
    recorded_report,
    recorded_runs,
    reference_prefix,
    report,
    suite_reference,
    with_unrescaled,
    write,
)

log = logging.getLogger(__name__)
EVAL_SEED = 12345  # every run is scored on the same task samples


def _config(
    preset: str,
    steps: int,
    seed: int,
    agent: str,
    rescale: dict[str, float],
    only_task: str | None = None,
    overrides: list[str] | None = None,
):
    from polyskill.trainer.config import apply_overrides
    from polyskill.trainer.presets import get_preset

    cfg = apply_overrides(get_preset(preset), overrides or [])
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


def _td_targets(root: Path, default: str) -> str:
    """amago2's critic target as its runs were trained (runs stored before the setting existed
    used scalar targets), e.g. "distributional" or "scalar, distributional"."""
    from polyskill.trainer.config import TrainConfig

    stored = {
        TrainConfig.from_dict(json.loads(p.read_text())).loss.td_target
        for p in (root / "amago2").glob("seed*/config.json")
    }
    return ", ".join(sorted(stored or {default}))


def _slug(override: str) -> str:
    """`loss.reward_multiplier=0.1` -> `reward_multiplier-0.1` (a file-name part)."""
    key, _, value = override.partition("=")
    return f"{key.strip().split('.')[-1]}-{value.strip()}".replace("/", "_").replace(" ", "")


def _run(
    cfg, run_dir: Path, label: str, deadline: float, eval_trials: int, train_more: bool = True
) -> RunResult:
    """Train the run up to its budget (or the deadline; `train_more=False`: not at all), then
    score its latest checkpoint."""
    from polyskill.trainer.loop import RunDir, train

    latest = RunDir(run_dir).latest_checkpoint()
    steps = json.loads((latest / "counters.json").read_text())["env_steps"] if latest else 0
    remaining = deadline - time.monotonic()
    if train_more and steps < cfg.total_steps and remaining > 30:
        log.info("%s: training %d -> %d env steps in %s", label, steps, cfg.total_steps, run_dir)
        cfg.max_seconds = remaining
        train(cfg, run_dir, track=False)
        latest = RunDir(run_dir).latest_checkpoint()
    if latest is None:
        return RunResult(label, 0, cfg.total_steps, {})
    env_steps = json.loads((latest / "counters.json").read_text())["env_steps"]
    stored = json.loads((run_dir / "config.json").read_text())
    return RunResult(
        label, env_steps, cfg.total_steps, _final_eval(cfg, latest, eval_trials), config=stored
    )


def _final_eval(cfg, checkpoint: Path, trials: int, epsilon: float = 0.0) -> dict[str, float]:
    """Evaluate a checkpoint on `trials` trials per task, cached next to it (reruns are free)."""
    from polyskill.agent.checkpoint import load_network
    from polyskill.trainer.evaluate import evaluate

    cache = checkpoint / f"eval_{trials}_eps{epsilon:g}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    metrics = evaluate(
        load_network(checkpoint), cfg.tasks, cfg.episodes_per_trial, trials, EVAL_SEED,
        epsilon=epsilon,
    )  # fmt: skip
    cache.write_text(json.dumps(metrics, indent=2))
    return metrics


def _chance(cfg, root: Path, trials: int) -> dict[str, float | None]:
    """Per-task trial return of uniformly random actions: measured for discrete tasks, from the
    suite's table for Meta-World (k x its random episode return), else None."""
    from polyskill.agent.checkpoint import load_network
    from polyskill.trainer.loop import RunDir

    k = cfg.episodes_per_trial
    out = {t.name: suite_reference(t.name, "random", k) for t in cfg.tasks}
    checkpoint = RunDir(root / "amago2" / f"seed{cfg.seed}").latest_checkpoint()
    if checkpoint is None or load_network(checkpoint).action_spec.kind != "discrete":
        return out
    metrics = _final_eval(cfg, checkpoint, trials, epsilon=1.0)
    return {t.name: metrics[f"eval/{t.name}/return"] for t in cfg.tasks}


def _carry_mismatch(run: RunResult, cfg) -> str | None:
    """Why a recorded run cannot stand for the one `cfg` would train (None: it can). Initial-weight
    settings count; a report written before runs recorded their config carries nothing."""
    from polyskill.trainer.loop import config_differences

    if run.config is None:
        return "the report does not record its config"
    diff = config_differences(run.config, cfg, init_too=True)
    return f"trained with other settings ({', '.join(diff)})" if diff else None


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
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="a training setting for every run, as in `polyskill train --set` (the run "
        "directories and reports get it in their name)",
    )
    p.add_argument(
        "--agents",
        nargs="+",
        choices=AGENTS,
        default=list(AGENTS),
        help="agents whose mix runs train (default both; the other's runs already in the run "
        "directory are still scored): one process per agent uses one core each",
    )
    p.add_argument("--no-reference", action="store_true", help="skip single-task references")
    p.add_argument(
        "--no-mix",
        action="store_true",
        help="train no mix runs, only single-task references (mixes already in the run "
        "directory or the committed report are still scored)",
    )
    p.add_argument(
        "--reference-agents",
        nargs="+",
        choices=AGENTS,
        default=["amago2"],
        help="agents that train single-task references (default amago2; add baseline to "
        "normalise each agent by its own: whether the baseline is crowded out or cannot learn "
        "the task at all)",
    )
    p.add_argument(
        "--reference-tasks",
        nargs="+",
        default=None,
        metavar="TASK",
        help="train single-task references for these tasks only (default: every task; those "
        "of other tasks already in the run directory are still scored)",
    )
    p.add_argument(
        "--eval-trials",
        type=int,
        default=None,
        help="trials per task in the final evaluation (default: 8x the preset's periodic "
        "evaluation, at most 256: 256 for `scales`, 16 for Meta-World's 1,500-step trials)",
    )
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
    settings = "".join(f"_{_slug(item)}" for item in args.overrides)
    name = args.preset + "".join(f"_{t}x{f:g}" for t, f in sorted(rescale.items())) + settings
    root = args.root / name
    deadline = time.monotonic() + (args.max_minutes * 60 if args.max_minutes else 1e12)

    try:  # a bad --set fails here, before any run starts
        base = _config(args.preset, args.steps, 0, "amago2", rescale, overrides=args.overrides)
    except ValueError as e:
        p.error(str(e))
    tasks, k = [t.name for t in base.tasks], base.episodes_per_trial
    unknown = set(args.reference_tasks or []) - set(tasks)
    if unknown:
        p.error(f"--reference-tasks {sorted(unknown)}: not in preset {args.preset!r} {tasks}")
    if args.eval_trials is None:
        args.eval_trials = min(256, 8 * base.eval_trials_per_task)
    old = recorded_report(args.out / f"{name}.json", args.steps, args.eval_trials)
    recorded = recorded_runs(old)
    results: dict[str, RunResult] = {}
    carried: list[str] = []

    def carry(label: str, run_dir: Path, cfg) -> bool:
        """Score a finished run from the earlier report when it is not on this machine and was
        trained with the settings this study would train it with."""
        if (run_dir / "config.json").exists() or label not in recorded:
            return False
        if not recorded[label].done:
            return False  # a partial run goes on only where its run directory is
        if why := _carry_mismatch(recorded[label], cfg):
            log.warning("%s: not taken from %s.json: %s", label, args.out / name, why)
            return False
        log.info("%s: scored from %s.json (%s)", label, args.out / name, recorded[label].machine)
        results[label] = recorded[label]
        carried.append(label)
        return True

    for seed in args.seeds:
        for agent in AGENTS:
            label = f"{agent}/seed{seed}"
            run_dir = root / agent / f"seed{seed}"
            cfg = _config(args.preset, args.steps, seed, agent, rescale, overrides=args.overrides)
            if carry(label, run_dir, cfg):
                continue
            train_mix = agent in args.agents and not args.no_mix
            if not train_mix and not (run_dir / "config.json").exists():
                continue
            results[label] = _run(
                cfg, run_dir, label, deadline, args.eval_trials, train_more=train_mix
            )
        for agent in [] if args.no_reference else args.reference_agents:
            for task in tasks:
                # references outside --reference-tasks are scored if already trained, not trained
                train_more = args.reference_tasks is None or task in args.reference_tasks
                label = f"{reference_prefix(agent)}/{task}/seed{seed}"
                run_dir = root / reference_prefix(agent) / task / f"seed{seed}"
                cfg = _config(args.preset, args.steps, seed, agent, rescale, only_task=task,
                              overrides=args.overrides)
                if carry(label, run_dir, cfg):
                    continue
                if not train_more and not (run_dir / "config.json").exists():
                    continue
                results[label] = _run(
                    cfg, run_dir, label, deadline, args.eval_trials, train_more=train_more
                )  # fmt: skip
    chance = _chance(_config(args.preset, args.steps, args.seeds[0], "amago2", rescale,
                             overrides=args.overrides), root, args.eval_trials)  # fmt: skip
    for row in old.get("rows", []):  # measured with a run that is not on this machine
        if chance.get(row["task"]) is None:
            chance[row["task"]] = row.get("chance")
    summary = report(args, results, tasks, k, chance)
    summary["carried"] = carried
    # the report is the study's record across machines: runs this call did not score (other
    # seeds, or settings that no longer match) stay in it, out of the table; a report at another
    # budget or evaluation is not this record (`recorded_report`) and is replaced
    kept = {label: run for label, run in recorded.items() if label not in results}
    summary["runs"].update({label: record(run, summary["machine"]) for label, run in kept.items()})
    summary["kept"] = sorted(kept)
    summary["td_target"] = _td_targets(root, old.get("td_target") or base.loss.td_target)
    summary = with_unrescaled(summary, args.out, args.preset + settings)
    write(summary, args.out, name)
    for r in summary["rows"]:
        print(
            f"{r['agent']:9s} {r['task']:18s} return {r['return']} chance {r['chance']} "
            f"normalised {r['normalised']} above chance {r['normalised_above_chance']} "
            f"gain {r['in_context_gain']}"
        )
    print(f"wrote {args.out / name}.{{json,md,png}}")
    return 0
