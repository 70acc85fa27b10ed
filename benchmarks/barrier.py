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
the same file, so give it its own `--out`. The report
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
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .machine import describe, summary_line

log = logging.getLogger(__name__)
AGENTS = ("amago2", "baseline")
EVAL_SEED = 12345  # every run is scored on the same task samples


@dataclass
class RunResult:
    label: str  # "amago2/seed0", "reference/<task>/seed0" or "reference-baseline/<task>/seed0"
    env_steps: int
    budget: int
    eval: dict[str, float]
    machine: str = ""  # where it was trained and scored (summary_line); "" = this machine
    config: dict | None = None  # the run's TrainConfig as it trained (its config.json)

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


def _reference(agent: str) -> str:
    """The label prefix and directory of an agent's single-task references (amago2's keep the
    plain name they had before baseline references existed)."""
    return "reference" if agent == "amago2" else f"reference-{agent}"


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
    out = {t.name: _suite_reference(t.name, "random", k) for t in cfg.tasks}
    checkpoint = RunDir(root / "amago2" / f"seed{cfg.seed}").latest_checkpoint()
    if checkpoint is None or load_network(checkpoint).action_spec.kind != "discrete":
        return out
    metrics = _final_eval(cfg, checkpoint, trials, epsilon=1.0)
    return {t.name: metrics[f"eval/{t.name}/return"] for t in cfg.tasks}


def _suite_reference(task: str, which: str, k: int) -> float | None:
    """A trial's return (k episodes) of the suite's random or scripted-expert policy, where the
    suite has one (Meta-World: trainer/envs/metaworld_v3_reference_returns.json)."""
    from polyskill.trainer.envs.metaworld import reference_returns

    ref = reference_returns(task)
    return None if ref is None else k * ref[which]


def _recorded(path: Path, steps: int, eval_trials: int) -> dict:
    """The study's earlier report, if it was made at the same budget and evaluation (else {})."""
    if not path.exists():
        return {}
    old = json.loads(path.read_text())
    return old if (old.get("steps"), old.get("eval_trials")) == (steps, eval_trials) else {}


def _recorded_runs(old: dict) -> dict[str, RunResult]:
    """The runs of an earlier report, each with the machine it ran on and its config."""
    machine = summary_line(old["machine"]) if "machine" in old else "unknown"
    return {
        label: RunResult(label, r["env_steps"], r["budget"], r["eval"], r.get("machine", machine),
                         r.get("config"))
        for label, r in old.get("runs", {}).items()
    }  # fmt: skip


def _record(run: RunResult, here: dict) -> dict:
    """A run as the report stores it: enough to score it again on a machine without it."""
    return {"env_steps": run.env_steps, "budget": run.budget, "done": run.done, "eval": run.eval,
            "machine": run.machine or summary_line(here), "config": run.config}  # fmt: skip


def _carry_mismatch(run: RunResult, cfg) -> str | None:
    """Why a recorded run cannot stand for the one `cfg` would train (None: it can). Initial-weight
    settings count; a report written before runs recorded their config carries nothing."""
    from polyskill.trainer.loop import config_differences

    if run.config is None:
        return "the report does not record its config"
    diff = config_differences(run.config, cfg, init_too=True)
    return f"trained with other settings ({', '.join(diff)})" if diff else None


def _task_score(result: RunResult, task: str) -> float | None:
    return result.eval.get(f"eval/{task}/return")


def _success(result: RunResult | None, task: str) -> float | None:
    return None if result is None else result.eval.get(f"eval/{task}/success")


def _gain(result: RunResult, task: str, k: int) -> float | None:
    first, last = (result.eval.get(f"eval/{task}/return_ep{i}") for i in (1, k))
    return None if first is None or last is None else last - first


def report(
    args: argparse.Namespace,
    results: dict[str, RunResult],
    tasks: list[str],
    k: int,
    chance: dict[str, float | None],
) -> dict:
    rows = []
    ref_agents = getattr(args, "reference_agents", ["amago2"])
    for agent in AGENTS:
        # Each agent against its own single-task runs where they were trained (what crowding out
        # means), else against amago2's.
        ref_agent = agent if agent in ref_agents else "amago2"
        for task in tasks:
            scores, refs, normed, above, gains, succ, ref_succ = [], [], [], [], [], [], []
            ref_all: list[float] = []  # every seed's reference, with or without its mix run
            rand = chance.get(task)
            expert = _suite_reference(task, "expert", k)
            for seed in args.seeds:
                run = results.get(f"{agent}/seed{seed}")
                ref = results.get(f"{_reference(ref_agent)}/{task}/seed{seed}")
                s = _task_score(run, task) if run else None
                r = _task_score(ref, task) if ref else None
                if r is not None:
                    ref_all.append(r)
                if (x := _success(ref, task)) is not None:
                    ref_succ.append(x)
                if s is None:
                    continue
                scores.append(s)
                if (x := _success(run, task)) is not None:
                    succ.append(x)
                if (g := _gain(run, task, k)) is not None:
                    gains.append(g)
                if r is not None:
                    refs.append(r)
                if r not in (None, 0):
                    normed.append(s / r)
                if r is not None and rand is not None and r > rand:
                    above.append((s - rand) / (r - rand))
            rows.append(
                {
                    "agent": agent,
                    "task": task,
                    "reference_agent": ref_agent,
                    "return": _mean(scores),
                    "return_per_seed": scores,
                    "chance": rand,
                    "reference_return": _mean(ref_all),
                    "reference_return_per_seed": ref_all,
                    "normalised": _mean(normed),
                    "normalised_above_chance": _mean(above),
                    "normalised_above_chance_per_seed": above,
                    "seeds_at_80_percent": sum(x >= 0.8 for x in above),
                    **_above_chance_of_means(scores, refs, rand),
                    "in_context_gain": _mean(gains),
                    "success": _mean(succ),
                    "reference_success": _mean(ref_succ),
                    "expert": expert,
                    "normalised_expert": (
                        None if not scores or expert is None or rand is None
                        else (_mean(scores) - rand) / (expert - rand)
                    ),
                    "seeds": len(scores),
                }
            )
    return {
        "preset": args.preset,
        "rescale": args.rescale,
        "settings": list(args.overrides),
        "steps": args.steps,
        "seeds": args.seeds,
        "eval_trials": args.eval_trials,
        "machine": (here := describe()),
        "runs": {k: _record(r, here) for k, r in results.items()},
        "rows": rows,
    }


def _above_chance_of_means(
    scores: list[float], refs: list[float], rand: float | None, resamples: int = 2000
) -> dict[str, float | list[float] | None]:
    """(mean return - chance) / (mean reference - chance), with a 90 % bootstrap interval.

    A mix and its reference share only a seed number: their training noise is independent (the
    dark room's references alone span 4,281-6,641 over four seeds), so a per-seed ratio carries
    two runs' noise. The ratio of the seed means, with seeds resampled independently on both
    sides, says how far the seeds at hand pin the score down."""
    none = {"above_chance_of_means": None, "above_chance_of_means_90": None}
    if not scores or not refs or rand is None or np.mean(refs) <= rand:
        return none
    rng = np.random.default_rng(0)
    s = rng.choice(scores, (resamples, len(scores))).mean(axis=1)  # (resamples,)
    r = rng.choice(refs, (resamples, len(refs))).mean(axis=1)
    ok = r > rand  # a resample whose reference is at chance has no margin to keep
    boot = (s[ok] - rand) / (r[ok] - rand)
    return {
        "above_chance_of_means": float((np.mean(scores) - rand) / (np.mean(refs) - rand)),
        "above_chance_of_means_90": (
            [float(x) for x in np.percentile(boot, [5, 95])] if boot.size else None
        ),
    }


def _mean(xs: list[float]) -> float | None:
    return float(np.mean(xs)) if xs else None


def write(summary: dict, out: Path, name: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(summary, indent=2))
    kept = set(summary.get("kept", []))
    partial = [k for k, r in summary["runs"].items() if not r["done"] and k not in kept]
    # Tasks with success flags get a success column; a suite with a scripted expert (Meta-World)
    # gets the expert-normalised one.
    success = any(r["success"] is not None for r in summary["rows"])
    expert = any(r["expert"] is not None for r in summary["rows"])
    unrescaled = any(r.get("unrescaled_above_chance") is not None for r in summary["rows"])
    lines = [
        f"# Reward-scale barrier: `{name}`",
        "",
        f"Preset `{summary['preset']}`, rescale {summary['rescale'] or 'none'}, settings "
        f"{' '.join(f'`{x}`' for x in summary['settings']) or 'as in the preset'}, budget "
        f"{summary['steps']:,} env steps per run, seeds {summary['seeds']}, "
        f"{summary['eval_trials']} evaluation trials per task, amago2 TD targets "
        f"{summary.get('td_target', 'scalar')}, machine: {summary_line(summary['machine'])}.",
        "",
        "Normalised: return / single-task reference (trained by the agent named in the "
        "reference column, same budget and seed); above chance: (return - chance) / "
        "(reference - chance), per seed, then averaged; at 80 %: seeds where that is >= 0.8 "
        "(the claim's bar); seed means: (mean return - chance) / (mean reference - chance), "
        "in brackets a 90 % bootstrap interval with the seeds of the mix and of the references "
        "resampled independently (they share only the seed number). In-context gain: last "
        "episode of a trial "
        "minus the first. Returns are per trial (all its episodes)."
        + (f" Unrescaled: the same row's above-chance score without the rescaling "
           f"(`{summary['unrescaled']['name']}`, seeds {summary['unrescaled']['seeds']})."
           if unrescaled else "")
        + (" Success: share of episodes solved (the single-task reference's in brackets)."
           if success else "")
        + (" Expert-normalised: (return - chance) / (scripted expert - chance), the suite's "
           "random and expert returns per episode times the episodes per trial."
           if expert else ""),
        "",
        "| agent | task | return (per seed) | chance | reference | reference return (per seed) "
        "| normalised "
        "| above chance (per seed) | at 80 % | above chance, seed means [90 %] |"
        + (" unrescaled |" if unrescaled else "")
        + " in-context gain |" + (" success (reference) |" if success else "")
        + (" expert-normalised |" if expert else "") + " seeds |",
        "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if unrescaled else "")
        + ("---|" if success else "") + ("---|" if expert else "") + "---|",
    ]

    def fmt(x: float | None, spec: str = ".3f") -> str:
        return "-" if x is None else format(x, spec)

    def each(xs: list[float], spec: str) -> str:
        return f" ({' / '.join(format(x, spec) for x in xs)})" if xs else ""

    for r in summary["rows"]:
        lines.append(
            f"| {r['agent']} | {r['task']} | {fmt(r['return'])}"
            f"{each(r['return_per_seed'], '.3g')} | {fmt(r['chance'])} | "
            f"{r.get('reference_agent', 'amago2')} | {fmt(r.get('reference_return'))}"
            f"{each(r.get('reference_return_per_seed', []), '.3g')} | "
            f"{fmt(r['normalised'], '.2f')} | "
            f"{fmt(r['normalised_above_chance'], '.2f')}"
            f"{each(r['normalised_above_chance_per_seed'], '.2f')} | "
            f"{_at_80(r)} | {_of_means(r)} |"
            + (f" {fmt(r.get('unrescaled_above_chance'), '.2f')} |" if unrescaled else "")
            + f" {fmt(r['in_context_gain'])} |"
            + (f" {fmt(r['success'], '.2f')} ({fmt(r['reference_success'], '.2f')}) |"
               if success else "")
            + (f" {fmt(r['normalised_expert'], '.2f')} |" if expert else "")
            + f" {r['seeds']} |"
        )
    if partial:
        lines += ["", f"Partial runs (short of the budget, reported as reached): {partial}"]
    if summary.get("carried"):
        lines += ["", "Runs scored from the earlier report (their run directories were not on the "
                  "machine that wrote this one): " + "; ".join(
                      f"{k} ({summary['runs'][k]['machine']})" for k in summary["carried"])]
    if summary.get("kept"):
        lines += ["", "Runs kept from the earlier report but not in this table (seeds or runs "
                  "this call did not score, or trained with other settings; see the JSON): "
                  + ", ".join(summary["kept"])]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    _plot(summary, out / f"{name}.png")


def _of_means(row: dict) -> str:
    """"0.80 [0.55-1.02]": the ratio of seed means and its bootstrap interval ("-": undefined)."""
    value, interval = row.get("above_chance_of_means"), row.get("above_chance_of_means_90")
    if value is None:
        return "-"
    return f"{value:.2f}" + (f" [{interval[0]:.2f}-{interval[1]:.2f}]" if interval else "")


def _at_80(row: dict) -> str:
    """Seeds whose above-chance score reaches the claim's 0.8, as "2 of 3" ("-": undefined)."""
    above = row["normalised_above_chance_per_seed"]
    return f"{row['seeds_at_80_percent']} of {len(above)}" if above else "-"


def _with_unrescaled(summary: dict, out: Path, name: str) -> dict:
    """A rescaled study's rows get the unrescaled study's above-chance score (its report in
    `out`, if run): "loses little when one task is rescaled" reads off one table."""
    path = out / f"{name}.json"
    if not summary["rescale"] or not path.exists():
        return summary
    base = json.loads(path.read_text())
    # like for like only: a score against another agent's reference is left out
    scores = {
        (r["agent"], r["task"], r.get("reference_agent", "amago2")): r["normalised_above_chance"]
        for r in base["rows"]
    }
    for r in summary["rows"]:
        r["unrescaled_above_chance"] = scores.get((r["agent"], r["task"], r["reference_agent"]))
    summary["unrescaled"] = {"name": name, "seeds": base["seeds"]}
    return summary


def _plot(summary: dict, path: Path) -> str:
    """Bars: mean normalised score per task and agent (above chance where chance is known);
    dots: the seeds. Without single-task references (`--no-reference`) the bars are the
    expert-normalised score where the suite has a scripted expert (Meta-World). Returns what
    the bars show: "reference" or "expert"."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in summary["rows"]})
    rows = {(r["agent"], r["task"]): r for r in summary["rows"]}
    by_expert = all(r["normalised"] is None for r in summary["rows"]) and any(
        r.get("normalised_expert") is not None for r in summary["rows"])
    fig, ax = plt.subplots(figsize=(1.8 * len(tasks) + 2, 3.5))
    width = 0.38
    for i, agent in enumerate(AGENTS):
        for j, task in enumerate(tasks):
            r = rows[(agent, task)]
            if by_expert:
                mean, seeds = r.get("normalised_expert") or 0.0, []
            elif r["chance"] is not None:
                mean = r["normalised_above_chance"] or 0.0
                seeds = r["normalised_above_chance_per_seed"]
            else:
                mean, seeds = r["normalised"] or 0.0, []
            x = j + (i - 0.5) * width
            ax.bar(x, mean, width, color=f"C{i}", label=agent if j == 0 else None)
            ax.plot([x] * len(seeds), seeds, "k.", markersize=4)
    if by_expert:
        ax.set_ylabel("(return - random) /\n(scripted expert - random)")
        ax.set_title("no single-task references: against the suite's random and expert policies",
                     fontsize=9)
    else:
        ax.axhline(0.8, color="grey", linestyle="--", linewidth=1, label="80 % of single-task")
        ax.set_ylabel("(return - chance) /\n(reference - chance)")
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set_xticks(np.arange(len(tasks)), tasks, rotation=15)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return "expert" if by_expert else "reference"


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
    old = _recorded(args.out / f"{name}.json", args.steps, args.eval_trials)
    recorded = _recorded_runs(old)
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
                label = f"{_reference(agent)}/{task}/seed{seed}"
                run_dir = root / _reference(agent) / task / f"seed{seed}"
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
    # budget or evaluation is not this record (`_recorded`) and is replaced
    kept = {label: run for label, run in recorded.items() if label not in results}
    summary["runs"].update({label: _record(run, summary["machine"]) for label, run in kept.items()})
    summary["kept"] = sorted(kept)
    summary["td_target"] = _td_targets(root, old.get("td_target") or base.loss.td_target)
    summary = _with_unrescaled(summary, args.out, args.preset + settings)
    write(summary, args.out, name)
    for r in summary["rows"]:
        print(
            f"{r['agent']:9s} {r['task']:18s} return {r['return']} chance {r['chance']} "
            f"normalised {r['normalised']} above chance {r['normalised_above_chance']} "
            f"gain {r['in_context_gain']}"
        )
    print(f"wrote {args.out / name}.{{json,md,png}}")
    return 0
